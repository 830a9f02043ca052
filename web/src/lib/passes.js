// The wallet's passes, kept on this device only (IndexedDB). A pass is a
// bearer credential: it never leaves the device except as the QR shown.

const DB = 'blindpass-wallet';
const STORE = 'passes';

function open() {
  return new Promise((resolve, reject) => {
    const request = indexedDB.open(DB, 1);
    request.onupgradeneeded = () => request.result.createObjectStore(STORE, { keyPath: 'id', autoIncrement: true });
    request.onsuccess = () => resolve(request.result);
    request.onerror = () => reject(request.error);
  });
}

async function run(mode, action) {
  const db = await open();
  try {
    return await new Promise((resolve, reject) => {
      const tx = db.transaction(STORE, mode);
      const request = action(tx.objectStore(STORE));
      tx.oncomplete = () => resolve(request.result);
      tx.onerror = () => reject(tx.error);
    });
  } finally {
    db.close();
  }
}

export function all() {
  return run('readonly', (store) => store.getAll());
}

export function add(pass) {
  return run('readwrite', (store) => store.add(pass));
}

export function remove(id) {
  return run('readwrite', (store) => store.delete(id));
}
