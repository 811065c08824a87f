"""test_browser_addon.py: the example browser add-on (examples/browser-addon) loaded unpacked in
headless Chromium, driven over the DevTools protocol: pairing from a link and from the options
page, "Send image" and "Send screenshot" (the context-menu handlers, called in the service worker
since a headless browser has no menus to click), against a scripted server that records exactly
what was sent and against the real stack; pairing from a #pair= link exchanges the code for a token
of the add-on's own, which it then uploads with (in the header) while announcing its presence."""

import hashlib
import json
import os
import re
import struct
import sys

from cdp import CHROMIUM, Chromium
from cli_helpers import Scripted, png_bytes, problem
from harness import SRCDIR, Stack, Tap, wait_for

if not os.access(CHROMIUM, os.X_OK):
    print("1..0 # SKIP %s is not installed" % CHROMIUM)
    sys.exit(0)

ADDON = os.path.join(SRCDIR, "examples", "browser-addon")
SID = "S" * 32
TOKEN = "itk." + "AddOn-_" * 4 + "xyzw"
CODE = "itp." + "C0de_" * 4 + "ab"
tap = Tap()
cat = png_bytes(120, 80, seed=7)
page = b"<!doctype html><title>cats</title><body style='background:#3a6'><img id=c src='/photos/cat.png'></body>"
OK = (201, {"Content-Type": "application/json"}, {"images": [{"id": "0b7e3c1a-2f4d-4c5e-9a8b-1c2d3e4f5a6b",
                                                              "filename": "cat.png"}]})


def js(v):
    return json.dumps(v)


def png_size(data):
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", data[16:24])


browser = Chromium(extension=ADDON)
try:
    sw = browser.wait_target(lambda t: t["type"] == "service_worker" and t["url"].startswith("chrome-extension://"),
                             timeout=60)
    ext_id = sw["url"].split("/")[2]
    s = browser.attach(sw["targetId"])
    # The worker is an ES module: the target exists a moment before the module has run.
    wait_for(lambda: browser.evaluate(s, "typeof imagetools") == "object", timeout=30, what="the add-on's worker")
    tap.ok(True, "the add-on loads unpacked in Chromium (Manifest V3 service worker)")

    with Scripted([OK, OK, problem(404, "unknown-session", "No such session, or it has expired."),
                   problem(415, "unsupported-media-type", "Not an image.")],
                  files={"/photos/cat.png": ("image/png", cat), "/page.html": ("text/html", page)}) as srv:
        r = browser.evaluate(s, "imagetools.pair(%s)" % js(srv.url + "/#s=" + SID))
        tap.is_(r and r.get("ok"), True, "pairing from the page's link")
        stored = browser.evaluate(s, "chrome.storage.sync.get(['server', 'session'])")
        tap.is_(stored, {"server": srv.url, "session": SID}, "server and session are taken from the link")
        r = browser.evaluate(s, "imagetools.pair('http://example.org/no-session-here')")
        tap.is_(r and r.get("ok"), False, "a link without a session is refused")

        r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_(r and r.get("ok"), True, "Send image: reported as sent")
        req = srv.requests[0] if srv.requests else {"parts": {}, "path": ""}
        tap.is_(req["path"], "/api/v1/images", "POST /api/v1/images")
        tap.is_(req["parts"].get("session_id", (0, b""))[1], SID.encode(), "session_id field")
        tap.is_(req["parts"].get("source", (0, b""))[1], b"browser_addon", "source=browser_addon")
        fname, data = req["parts"].get("file", (None, b""))
        tap.is_(fname, "cat.png", "the file part is named after the image URL")
        tap.ok(data == cat, "the file part holds the image's exact bytes")

        tab = browser.send("Target.createTarget", {"url": srv.url + "/page.html"})
        wait_for(lambda: browser.evaluate(s, "chrome.tabs.query({url: %s, status: 'complete'}).then(t => t.length)"
                                          % js(srv.url + "/page.html")), timeout=15, what="the page to load")
        r = browser.evaluate(s, "chrome.tabs.query({url: %s}).then(t => imagetools.sendScreenshot(t[0]))"
                             % js(srv.url + "/page.html"))
        tap.is_(r and r.get("ok"), True, "Send screenshot: reported as sent")
        req = srv.requests[1] if len(srv.requests) > 1 else {"parts": {}}
        fname, data = req["parts"].get("file", (None, b""))
        tap.like(fname or "", r"^screenshot-\d{4}-\d\d-\d\d-\d\d-\d\d-\d\d\.png$", "the screenshot is named by date")
        size = png_size(data or b"")
        tap.ok(size is not None and size[0] > 100 and size[1] > 100, "the screenshot is a PNG of the tab (%r)" % (size,))
        tap.is_(req["parts"].get("source", (0, b""))[1], b"browser_addon", "screenshot source=browser_addon")

        r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_((r or {}).get("status"), 404, "an unknown session is reported as failed")
        tap.like((r or {}).get("message", ""), r"unknown or has expired", "with a message the user can act on")
        tap.is_(browser.evaluate(s, "chrome.action.getBadgeText({})"), "ERR", "the toolbar button shows the failure")
        r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.like((r or {}).get("message", ""), r"does not accept this file as an image", "415 is explained")
        r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/missing.png"))
        tap.like((r or {}).get("message", ""), r"Cannot fetch the image", "an image that cannot be fetched")
        tap.is_(len(srv.requests), 4, "and nothing was posted for it")
        browser.send("Target.closeTarget", {"targetId": tab["targetId"]})

    # The add-on posts from its extension origin, which the server refuses unless listed.
    with Stack(tap, settings={"allowed_origins": "chrome-extension://%s" % ext_id}) as st:
        sid = st.new_session()
        # The options page: paste the pairing link, save, and it checks the session exists.
        opt = browser.send("Target.createTarget", {"url": "chrome-extension://%s/options.html" % ext_id})
        ps = browser.attach(opt["targetId"])
        wait_for(lambda: browser.evaluate(ps, "document.readyState === 'complete' && "
                                             "!!document.getElementById('pairing')"), what="options page")
        # The page fills in what is stored asynchronously; wait for it before typing.
        shown = wait_for(lambda: browser.evaluate(ps, "document.getElementById('pairing').value"), timeout=10,
                         what="the stored session on the options page")
        tap.is_(shown, SID, "options page: shows the stored session")
        browser.evaluate(ps, "document.getElementById('pairing').value = %s; "
                             "document.getElementById('form').requestSubmit(); true" % js(st.url + "/#s=" + sid))
        status = wait_for(lambda: browser.evaluate(ps, "document.getElementById('status').textContent"),
                          timeout=15, what="the options page's answer")
        tap.like(status, r"^Saved\. Paired: the session exists\.$", "options page: pairing link saved and checked")
        stored = browser.evaluate(s, "chrome.storage.sync.get(['server', 'session'])")
        tap.is_(stored, {"server": st.url, "session": sid}, "options page: stored server and session")
        browser.evaluate(ps, "document.getElementById('pairing').value = %s; "
                             "document.getElementById('status').textContent = ''; "
                             "document.getElementById('form').requestSubmit(); true" % js("Z" * 32))
        status = wait_for(lambda: browser.evaluate(ps, "document.getElementById('status').textContent"),
                          timeout=15, what="the options page's answer")
        tap.like(status, r"unknown or has expired", "options page: an unknown session is reported")
        browser.send("Target.closeTarget", {"targetId": opt["targetId"]})

        browser.evaluate(s, "imagetools.pair(%s)" % js(st.url + "/#s=" + sid))
        with Scripted([], files={"/photos/cat.png": ("image/png", cat)}) as srv:
            r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_((r or {}).get("ok"), True, "real server: Send image stored it")
        img = (r or {}).get("image") or {}
        tap.is_(img.get("source"), "browser_addon", "real server: source browser_addon")
        tap.is_(img.get("sha256"), hashlib.sha256(cat).hexdigest(), "real server: the bytes stored are the image's")
        tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1' AND source = 'browser_addon'", sid),
                "1", "real server: one image in the session")
        # Pairing from a #pair= link: the code is exchanged for a token of the add-on's own.
        pairing = st.request("POST", "/api/v1/pairings", body={"scope": "upload"},
                             headers={"Authorization": "Bearer " + sid})
        tap.is_(pairing.status, 201, "real server: the owner makes a pairing code")
        link = (pairing.json() if pairing.status == 201 else {}).get("pair_url", "?")
        tap.like(link, r"/#pair=itp\.", "real server: the pairing link carries the code in its fragment")
        r = browser.evaluate(s, "imagetools.pair(%s)" % js(link))
        tap.is_(((r or {}).get("ok"), (r or {}).get("scope")), (True, "upload"), "#pair= link: paired, scope upload")
        tap.ok("token" not in (r or {}), "#pair= link: the token stays inside the add-on")
        kept = browser.evaluate(s, "chrome.storage.local.get(['server', 'token'])") or {}
        tap.like(kept.get("token", ""), r"^itk\.[A-Za-z0-9_-]{32}$", "#pair= link: a token in local storage")
        tap.is_(kept.get("server"), st.url, "#pair= link: with the server from the link")
        tap.is_(browser.evaluate(s, "chrome.storage.sync.get('session')"), {},
                "#pair= link: the session id is no longer kept in synced storage")
        tap.is_(st.sql("SELECT label || '|' || source || '|' || scope FROM devices WHERE session_id = :'p1'", sid),
                "Browser add-on|browser_addon|upload", "#pair= link: the device is the Browser add-on")
        mark = st.sql("SELECT max(seq) FROM events WHERE session_id = :'p1'", sid)
        with Scripted([], files={"/photos/cat.png": ("image/png", cat)}) as srv:
            r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_((r or {}).get("ok"), True, "token: Send image stored it")
        tap.is_(((r or {}).get("image") or {}).get("sha256"), hashlib.sha256(cat).hexdigest(),
                "token: the bytes stored are the image's")
        tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1' AND source = 'browser_addon'", sid),
                "2", "token: the image is in the code's session")
        # While it sent, the add-on was in the session's presence list, as itself, uploading.
        joined = st.sql("SELECT concat_ws('|', payload->>'label', payload->>'source', payload->>'state', "
                        "payload->>'client_id') FROM events WHERE session_id = :'p1' AND type = 'presence.joined' "
                        "AND seq > %d ORDER BY seq" % int(mark), sid).splitlines()
        tap.is_([j.rsplit("|", 1)[0] for j in joined], ["Browser add-on|browser_addon|uploading"],
                "token: presence.joined for the add-on, uploading, while it sent")
        cid = joined[0].rsplit("|", 1)[1] if joined else "?"
        tap.is_(st.sql("SELECT count(*) FROM events WHERE session_id = :'p1' AND type = 'presence.left' "
                       "AND payload->>'client_id' = :'p2' AND seq > %d" % int(mark), sid, cid), "1",
                "token: and presence.left once it was done")
        r = browser.evaluate(s, "imagetools.pair(%s)" % js(link))
        tap.like((r or {}).get("message", ""), r"already used", "the same #pair= link again: refused as used")
        tap.is_((r or {}).get("status"), 410, "with the server's 410")
        # Revoked from the page: the next upload says so and stores nothing.
        dev = st.sql("SELECT id FROM devices WHERE session_id = :'p1'", sid)
        tap.is_(st.request("DELETE", "/api/v1/devices/" + dev, headers={"Authorization": "Bearer " + sid}).status,
                204, "the owner revokes the add-on")
        with Scripted([], files={"/photos/cat.png": ("image/png", cat)}) as srv:
            r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_((r or {}).get("status"), 401, "revoked: the upload is refused with 401")
        tap.like((r or {}).get("message", ""), r"token is unknown, expired or revoked: pair again",
                 "revoked: the message says to pair again")
        tap.is_(st.sql("SELECT count(*) FROM images WHERE session_id = :'p1'", sid), "2", "revoked: nothing stored")

        # A bare code pasted into the options page, with the server typed in: paired again.
        pairing = st.request("POST", "/api/v1/pairings", body={"scope": "upload"},
                             headers={"Authorization": "Bearer " + sid})
        code = (pairing.json() if pairing.status == 201 else {}).get("code", "?")
        opt = browser.send("Target.createTarget", {"url": "chrome-extension://%s/options.html" % ext_id})
        ps = browser.attach(opt["targetId"])
        wait_for(lambda: browser.evaluate(ps, "document.readyState === 'complete' && "
                                             "!!document.getElementById('pairing')"), what="options page")
        browser.evaluate(ps, "document.getElementById('server').value = %s; "
                             "document.getElementById('pairing').value = %s; "
                             "document.getElementById('status').textContent = ''; "
                             "document.getElementById('form').requestSubmit(); true" % (js(st.url), js(code)))
        status = wait_for(lambda: browser.evaluate(ps, "document.getElementById('status').textContent"),
                          timeout=15, what="the options page's answer")
        tap.is_(status, 'Paired as "Browser add-on" (upload).', "options page: a pasted code is exchanged")
        shown = browser.evaluate(ps, "[document.getElementById('pairing').value, "
                                     "document.getElementById('pairing').placeholder]") or ["?", "?"]
        tap.ok(shown[0] == "" and re.match(r"^paired: token itk\.\S{6}\.\.\. \(upload\)$", shown[1]),
               "options page: the field is emptied and shows only the token's prefix (%r)" % (shown,))
        browser.send("Target.closeTarget", {"targetId": opt["targetId"]})
        with Scripted([], files={"/photos/cat.png": ("image/png", cat)}) as srv:
            r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_((r or {}).get("ok"), True, "options page pairing: Send image stored it")
        tap.is_(st.sql("SELECT count(*) FROM images i JOIN devices d ON d.session_id = i.session_id "
                       "WHERE i.session_id = :'p1' AND d.revoked_at IS NULL", sid), "3",
                "options page pairing: the third image, with a live device")

    # Against a scripted server: the token goes in the header only, and the add-on is in the
    # session's presence list while it sends.
    paired = (201, {"Content-Type": "application/json"},
              {"token": TOKEN, "device_id": "dev_" + "d" * 16, "scope": "upload", "label": "Browser add-on",
               "source": "browser_addon", "expires_at": "2027-01-01T00:00:00.000Z"})
    with Scripted([paired, OK], files={"/photos/cat.png": ("image/png", cat)}, presence_status=204) as srv:
        r = browser.evaluate(s, "imagetools.pair(%s)" % js(srv.url + "/index.html#pair=" + CODE))
        tap.is_((r or {}).get("ok"), True, "scripted: paired from a #pair= link")
        req = srv.requests[0] if srv.requests else {"path": "", "headers": {}}
        tap.is_(req["path"], "/api/v1/pair", "scripted: the code is posted to /api/v1/pair")
        r = browser.evaluate(s, "imagetools.sendImage(%s)" % js(srv.url + "/photos/cat.png"))
        tap.is_((r or {}).get("ok"), True, "scripted: sent with the token")
        req = srv.requests[1] if len(srv.requests) > 1 else {"parts": {}, "path": "", "headers": {}}
        tap.is_(req["headers"].get("Authorization"), "Bearer " + TOKEN, "scripted: the token in Authorization")
        tap.ok("session_id" not in req["parts"] and "?" not in req["path"],
               "scripted: no session_id field and nothing in the URL")
        tap.ok(req["parts"].get("file", (None, b""))[1] == cat, "scripted: the image's exact bytes")
        pres = srv.presence
        tap.is_([(x["method"], (x["body"] or {}).get("state")) for x in pres], [("POST", "uploading"), ("DELETE", None)],
                "scripted: a presence heartbeat while sending, and a leave after")
        body = (pres[0]["body"] or {}) if pres else {}
        tap.is_((body.get("label"), body.get("source")), ("Browser add-on", "browser_addon"),
                "scripted: presence label and source")
        tap.ok(pres and all(x["headers"].get("Authorization") == "Bearer " + TOKEN for x in pres) and
               pres[0]["t"] < req["t"] and pres[-1]["t"] > req["t"], "scripted: around the upload, with the token")
        # An older #s= link still pairs with the session id, as before, and replaces the token.
        r = browser.evaluate(s, "imagetools.pair(%s)" % js(srv.url + "/#s=" + SID))
        tap.is_(browser.evaluate(s, "chrome.storage.local.get('token')"), {}, "an #s= link afterwards drops the token")
finally:
    browser.close()

tap.done()
