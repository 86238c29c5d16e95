// A plain IndexedDB request as a promise (browser-models.ts, browser-sessions.ts: plain IndexedDB, so no connection
// stays open to block a deleteDatabase).
export function request<T>(req: IDBRequest<T>): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });
}
