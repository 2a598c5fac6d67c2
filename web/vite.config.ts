/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

declare const process: { env: Record<string, string | undefined> };

// Served by the API at / (web/dist); in `npm run dev` the API calls go to :8000.
const api = process.env.DASHBOARD_API ?? "http://127.0.0.1:8000";
const proxied = ["/v1", "/sites", "/healthz", "/readyz"];

export default defineConfig({
  base: "/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: Object.fromEntries(proxied.map((path) => [path, { target: api, changeOrigin: false }])),
  },
  test: { include: ["test/**/*.test.ts"], environment: "node" },
});
