// server.mjs: @tus/server with its file store on 127.0.0.1, the reference bench/tus.py measures against.
//   node server.mjs PORT DIR
import http from 'node:http';
import { Server } from '@tus/server';
import { FileStore } from '@tus/file-store';

const [port, dir] = process.argv.slice(2);
const tus = new Server({ path: '/files', datastore: new FileStore({ directory: dir }) });
http.createServer((req, res) => tus.handle(req, res)).listen(Number(port), '127.0.0.1', () => {
  console.log('listening');
});
