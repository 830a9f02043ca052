// Registers the service worker that keeps the pages usable offline.

export function registerWorker() {
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {
      // Offline use is a bonus; the pages work online without it.
    });
  }
}
