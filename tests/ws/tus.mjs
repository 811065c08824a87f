// tus.mjs: uploads one file with tus-js-client, the client web pages, Uppy and the phone libraries build on,
// for tests/integration/test_tus_node.py. Prints one JSON line per outcome.
//
//   node tus.mjs ENDPOINT SESSION FILE [--abort-at BYTES] [--resume URL] [--chunk BYTES] [--bearer]
//
// --abort-at: aborts the upload once that many bytes are acknowledged and prints {"aborted": url, "offset": n};
// --resume: goes on with the upload at URL (as a page does with the URL it kept), asking the server where it
// stands; --chunk: PATCH size (default: the whole rest in one request); --bearer: the session in an
// Authorization header instead of Upload-Metadata.
import fs from 'node:fs';
import * as tus from 'tus-js-client';

const [endpoint, session, file, ...rest] = process.argv.slice(2);
const opt = {};
for (let i = 0; i < rest.length; i++) {
  if (rest[i] === '--bearer') opt.bearer = true;
  else opt[rest[i].slice(2).replace('-', '_')] = rest[++i];
}
const data = fs.readFileSync(file);
let acked = 0;
let aborted = false;

const upload = new tus.Upload(data, {
  endpoint,
  uploadUrl: opt.resume || null,
  chunkSize: opt.chunk ? Number(opt.chunk) : Infinity,
  retryDelays: [100, 500, 1000, 2000, 4000],
  metadata: opt.bearer ? { filename: 'node.png', filetype: 'image/png', source: 'api' }
    : { session_id: session, filename: 'node.png', filetype: 'image/png', source: 'api' },
  headers: opt.bearer ? { Authorization: `Bearer ${session}` } : {},
  removeFingerprintOnSuccess: true,
  onChunkComplete(chunk, accepted) {
    acked = accepted;
    if (opt.abort_at && !aborted && accepted >= Number(opt.abort_at)) {
      aborted = true;
      upload.abort().then(() => {
        console.log(JSON.stringify({ aborted: upload.url, offset: acked }));
      });
    }
  },
  onError(err) {
    console.log(JSON.stringify({ error: String(err && err.message ? err.message : err) }));
    process.exitCode = 1;
  },
  onSuccess() {
    console.log(JSON.stringify({ success: upload.url, offset: acked }));
  },
});
upload.start();
