// The dashboard in a real browser (Debian's chromium through playwright-core; nothing is
// downloaded). Driven by tests/ui/test_dashboard_browser.py, which runs the stack:
//
//   DASHBOARD_URL   the API serving the dashboard, e.g. http://127.0.0.1:8000
//   DASHBOARD_KEY   an API key to sign in with (absent: auth is disabled)
//   E2E_DEVICE      the device to chart (its history and a forecast model are seeded)
//   E2E_METRIC      the metric to chart (default power_w)
//   E2E_SCREENSHOT  where to save the screenshot (default ../results/dashboard.png)
//   E2E_TIMEOUT_MS  the longest any one wait may take (default 60000)
//   CHROMIUM        the browser (default /usr/bin/chromium)
//
// Handshake on stdio: once the alert feed is live it prints `feed-live`; the harness
// raises an alert and answers with the rule's id on stdin; the alert must then appear.
// Last line on stdout: a JSON summary of what was seen.
import { mkdirSync } from "node:fs";
import { dirname, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.DASHBOARD_URL ?? "http://127.0.0.1:8000";
const key = process.env.DASHBOARD_KEY ?? "";
const device = process.env.E2E_DEVICE ?? "";
const metric = process.env.E2E_METRIC ?? "power_w";
const screenshot = resolve(process.env.E2E_SCREENSHOT ?? resolve(here, "../../results/dashboard.png"));
const timeout = Number(process.env.E2E_TIMEOUT_MS ?? 60000);
const executablePath = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

const log = (...parts) => console.error("e2e:", ...parts);
const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();

async function nextLine(what) {
  let timer;
  const expired = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no ${what} on stdin within ${timeout} ms`)), timeout);
  });
  try {
    const { value, done } = await Promise.race([lines.next(), expired]);
    if (done) throw new Error(`stdin closed before ${what}`);
    return value.trim();
  } finally {
    clearTimeout(timer);
  }
}

/** A count exposed as a data attribute, once it is above zero. */
async function pointsOf(page, testid, attribute = "data-points") {
  const handle = await page.waitForFunction(
    ([id, attr]) => {
      const element = document.querySelector(`[data-testid="${id}"]`);
      const value = element ? Number(element.getAttribute(attr)) : 0;
      return value > 0 ? value : false;
    },
    [testid, attribute],
    { timeout },
  );
  return handle.jsonValue();
}

async function signIn(page) {
  await page.goto(base, { waitUntil: "domcontentloaded" });
  const signin = page.getByTestId("signin-key");
  const tenant = page.getByTestId("tenant");
  await signin.or(tenant).first().waitFor({ timeout });
  if (await signin.isVisible()) {
    if (!key) throw new Error("the dashboard asks for a key and DASHBOARD_KEY is empty");
    // Keyboard only: the field has focus, Enter submits.
    await signin.fill(key);
    await signin.press("Enter");
  }
  await tenant.waitFor({ timeout });
  return (await tenant.textContent()).trim();
}

async function generatorRoundTrip(page) {
  const rate = page.getByTestId("gen-rate");
  await rate.waitFor({ timeout });
  const wanted = String(10 + Math.round(Math.random() * 40));
  await rate.fill(wanted);
  await page.getByTestId("gen-save").click();
  await page.getByTestId("generator-saved").waitFor({ timeout });
  // The stored value comes back after a reload (the key survives it in session storage).
  await page.reload({ waitUntil: "domcontentloaded" });
  await page.getByTestId("tenant").waitFor({ timeout });
  await page.getByTestId("gen-rate").waitFor({ timeout });
  const stored = await page.getByTestId("gen-rate").inputValue();
  if (Number(stored) !== Number(wanted)) throw new Error(`gen-rate reads ${stored} after saving ${wanted}`);
  // A value the server refuses: its message shows next to the field.
  await page.getByTestId("gen-burst_seconds").fill("999");
  await page.getByTestId("gen-burst_every_s").fill("60");
  await page.getByTestId("gen-save").click();
  const error = page.getByTestId("field-error-burst_seconds");
  await error.waitFor({ timeout });
  const message = (await error.textContent()).trim();
  const invalid = await page.getByTestId("gen-burst_seconds").getAttribute("aria-invalid");
  if (invalid !== "true") throw new Error("the refused field is not marked aria-invalid");
  return { rate: Number(stored), error: message };
}

async function chooseDevice(page) {
  await page.getByTestId("target-kind-device").check();
  await page.getByTestId("target-search").fill(device);
  const option = page.locator(`[data-testid="target-option"][data-id="${device}"]`);
  await option.waitFor({ timeout });
  await option.click();
  await page.getByTestId("metric-select").selectOption(metric);
  await page.getByTestId("range-6h").click();
}

async function main() {
  if (!device) throw new Error("E2E_DEVICE is required");
  const browser = await chromium.launch({ executablePath, args: ARGS, headless: true, timeout });
  const summary = {};
  try {
    const context = await browser.newContext({ viewport: { width: 1600, height: 1300 } });
    const page = await context.newPage();
    const problems = [];
    page.on("pageerror", (error) => problems.push(String(error)));
    page.on("console", (message) => {
      if (message.type() === "error") log("console:", message.text());
    });

    summary.tenant = await signIn(page);
    log("signed in:", summary.tenant);
    summary.generator = await generatorRoundTrip(page);
    log("generator form:", JSON.stringify(summary.generator));

    await chooseDevice(page);
    summary.interval = await page.getByTestId("chosen-interval").getAttribute("data-interval");
    summary.aggregate_points = await pointsOf(page, "aggregate-chart");
    summary.forecast_history_points = await pointsOf(page, "forecast-chart", "data-points-1");
    summary.forecast_points = await pointsOf(page, "forecast-chart", "data-points-2");
    summary.energy_points = await pointsOf(page, "energy-chart");
    await page.getByTestId("efficiency-pct").waitFor({ timeout });
    summary.status_rows = await page.getByTestId("status-row").count();
    log("charts:", JSON.stringify(summary));

    await page.getByTestId("pipeline-consumer").first().waitFor({ timeout });
    summary.pipeline = {
      ingest_rate: (await page.getByTestId("pipeline-ingest-rate").textContent()).trim(),
      backlog: (await page.getByTestId("pipeline-backlog").textContent()).trim(),
      consumers: await page.getByTestId("pipeline-consumer").count(),
    };

    await page.locator('[data-testid="alert-feed-status"][data-status="live"]').waitFor({ timeout });
    console.log("feed-live");
    const ruleId = await nextLine("rule id");
    const item = page.locator(`[data-testid="alert-item"][data-rule-id="${ruleId}"]`).first();
    await item.waitFor({ timeout });
    summary.alert = {
      rule_id: Number(ruleId),
      device: await item.getAttribute("data-device"),
      state: await item.getAttribute("data-state"),
      title: await item.locator("time").getAttribute("title"),
    };
    log("alert:", JSON.stringify(summary.alert));

    // Times carry their UTC spelling on hover.
    const titled = await page.locator("time[title$=' UTC']").count();
    if (titled === 0) throw new Error("no time shows its UTC spelling on hover");
    summary.problems = problems;
    mkdirSync(dirname(screenshot), { recursive: true });
    await page.screenshot({ path: screenshot, fullPage: true });
    summary.screenshot = screenshot;
    if (problems.length) throw new Error(`page errors: ${problems.join("; ")}`);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(summary));
}

main().then(
  () => process.exit(0),
  (error) => {
    console.error(`e2e: FAILED: ${error.stack ?? error}`);
    process.exit(1);
  },
);
