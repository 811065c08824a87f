"""test_novips.py: a build configured --without-vips (for hosts that lack libvips' libraries)
stores uploads byte for byte and reports them as events; it makes no thumbnails (their URL
answers 404 no-thumbnail), refuses operations with 501 (no worker is built), and says in
GET /health that it writes no format. Skips in a build with libvips."""

import hashlib
import os

from apache import prerequisites
from deploy_scenarios import multipart, png_bytes
from harness import BUILDDIR, Stack, Tap

why = prerequisites("lighttpd")
with open(os.path.join(BUILDDIR, "config.h")) as f:
    if "#define IT_HAVE_VIPS 1" in f.read():
        why = why or "this build has libvips (configure --without-vips builds what this tests)"
if why:
    print("1..0 # SKIP " + why)
    raise SystemExit(0)

tap = Tap()
tap.ok(not os.path.exists(os.path.join(BUILDDIR, "imagetools-worker")), "no imagetools-worker is built")
with Stack(tap) as st:
    sid = st.new_session()
    data = png_bytes(64, 48, seed=9)
    ctype, body = multipart({"session_id": sid}, [("file", "plain.png", "image/png", data)])
    r = st.request("POST", "/api/v1/images", body=body, headers={"Content-Type": ctype})
    tap.is_(r.status, 201, "an upload is stored")
    img = r.json()["images"][0] if r.status == 201 else {}
    tap.is_((img.get("sha256"), img.get("width"), img.get("height")),
            (hashlib.sha256(data).hexdigest(), 64, 48), "with its digest and size, read from its header")
    f = st.request("GET", img.get("file_url", "/"))
    tap.ok(f.status == 200 and f.body == data, "and downloads byte for byte")
    st.is_problem(st.request("GET", img.get("thumbnail_url", "/")), 404, "its thumbnail")
    evs = st.sql("SELECT payload->>'image_id' FROM events WHERE session_id = :'p1' AND type = 'image.uploaded'", sid)
    tap.is_(evs.split(), [img.get("id")], "one image.uploaded event")
    ctype, body = multipart({"session_id": sid}, [("file", "notes.txt", "image/png", b"not an image\n")])
    st.is_problem(st.request("POST", "/api/v1/images", body=body, headers={"Content-Type": ctype}), 415,
                  "a non-image is still refused")
    r = st.request("POST", "/api/v1/operations", headers={"Authorization": "Bearer " + sid},
                   body={"session_id": sid, "type": "bulk_resize", "image_ids": [img.get("id")], "params": {"width": 8}})
    p = st.is_problem(r, 501, "an operation")
    tap.like((p or {}).get("type", ""), "operations-unavailable$", "is refused as unavailable here")
    tap.is_(st.sql("SELECT count(*) FROM operations"), "0", "and nothing is queued")
    h = st.request("GET", "/api/v1/health").json()
    tap.is_(h.get("formats", {}).get("write"), [], "health: this server writes no format")
tap.done()
