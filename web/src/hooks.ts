import { useEffect, useRef, useState } from "react";

export interface Resource<T> {
  data: T | null;
  error: unknown;
  loading: boolean;
}

/**
 * Load on mount and whenever `key` changes (the data of the previous key is dropped), then
 * every `refreshMs` when given, keeping the last data while a refresh fails.
 */
export function useResource<T>(
  load: ((signal: AbortSignal) => Promise<T>) | null,
  key: string,
  refreshMs = 0,
): Resource<T> {
  const [state, setState] = useState<Resource<T>>({ data: null, error: null, loading: !!load });
  const loadRef = useRef(load);
  loadRef.current = load;
  useEffect(() => {
    if (!loadRef.current) {
      setState({ data: null, error: null, loading: false });
      return;
    }
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    setState({ data: null, error: null, loading: true });
    const tick = async () => {
      const current = loadRef.current;
      if (!current) return;
      try {
        const data = await current(controller.signal);
        if (!controller.signal.aborted) setState({ data, error: null, loading: false });
      } catch (error) {
        if (controller.signal.aborted) return;
        setState((s) => ({ data: s.data, error, loading: false }));
      }
      if (refreshMs > 0 && !controller.signal.aborted) timer = setTimeout(tick, refreshMs);
    };
    void tick();
    return () => {
      controller.abort();
      if (timer) clearTimeout(timer);
    };
  }, [key, refreshMs]);
  return state;
}

/** A value that follows `value` once it has stopped changing for `ms`. */
export function useDebounced<T>(value: T, ms: number): T {
  const [settled, setSettled] = useState(value);
  useEffect(() => {
    const timer = setTimeout(() => setSettled(value), ms);
    return () => clearTimeout(timer);
  }, [value, ms]);
  return settled;
}
