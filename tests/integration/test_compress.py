"""test_compress.py: bulk operations that never damage an image, on a generated corpus
(compress_corpus.py: a 12-megapixel photo stored sideways in Display P3, a screenshot PNG, PNG with
alpha, palette PNG, 16-bit PNG, animated GIF, animated and lossless WebP, CMYK and greyscale JPEG,
HEIC and AVIF when this libvips writes them), uploaded through the API, run by a real worker:

- compress with default settings keeps every image's format, size, alpha, frame count and depth;
  no file gets larger (an image that would is `unchanged`, with the reason); a CMYK JPEG is written
  as YCCK, as Photoshop and ImageMagick write it (smaller than libvips' plain CMYK); the lossy ones stay
  above the SSIM floor below, the lossless ones are pixel-identical (SSIM 1); the photo keeps its
  EXIF orientation and ICC profile; the events carry per-image bytes and the totals, and the
  closing message says "Saved ... on N images, M unchanged";
- downloads of the compressed PNG and GIF are still PNG and GIF: bytes, Content-Type and name;
- strip turns the photo upright and drops EXIF but keeps its (not sRGB) profile;
- convert renames (extension of the new type), flattens alpha only onto the chosen background,
  keeps animation where the format can, and turns HEIC and AVIF into JPEG and WebP;
- resize keeps the aspect, never enlarges unless asked, keeps animation;
- alpha is flattened only for JPEG, onto the background asked for (white by default), and kept by
  WebP, AVIF and a resized PNG; a resize fits its box with the aspect kept;
- HEIC and AVIF become JPEG or WebP through compress with a format and through convert.
"""

import os
import shutil
import subprocess
import tempfile

from harness import Stack, Tap
import compress_corpus as cc
import worker_util as wu

# The SSIM floors at the default quality (75), documented in docs/worker.md: the worst of the
# generated photos (colour noise, the hardest material a JPEG meets) measures about 0.97.
SSIM_LOSSY = 0.95
SSIM_LOSSLESS = 0.9999

tap = Tap()
work = tempfile.mkdtemp(prefix="it-compress-")


def sniff(data):
    for magic, kind in ((b"\xff\xd8\xff", "jpeg"), (b"\x89PNG\r\n\x1a\n", "png"), (b"GIF8", "gif")):
        if data.startswith(magic):
            return kind
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[4:8] == b"ftyp":
        return "heif"
    return "?"


def subprocess_out(argv):
    r = subprocess.run(argv, capture_output=True, text=True)
    return r.stdout.strip()


def adobe_transform(path):
    """The colour transform of a JPEG's Adobe APP14 segment (0 none, 1 YCbCr, 2 YCCK), or None."""
    with open(path, "rb") as f:
        b = f.read()
    i = 2
    while i + 4 <= len(b) and b[i] == 0xFF and b[i + 1] != 0xDA:
        n = int.from_bytes(b[i + 2:i + 4], "big")
        if b[i + 1] == 0xEE and b[i + 4:i + 9] == b"Adobe":
            return b[i + 15]
        i += 2 + n
    return None


def save(name, data):
    p = os.path.join(work, name)
    with open(p, "wb") as f:
        f.write(data)
    return p


try:
    os.makedirs(os.path.join(work, "corpus"))
    items = cc.make(os.path.join(work, "corpus"))
    by_name = {i.name: i for i in items}
    tap.diag("corpus: " + ", ".join("%s %d B" % (i.name, i.size) for i in items))
    with Stack(tap, settings={"thumbnail_size": 64}, worker=True) as st:
        sid = st.new_session()
        auth = {"Authorization": "Bearer " + sid}
        ids = {}
        for it in items:
            ids[it.name] = wu.put_image(st, sid, it.data(), filename=it.name)
        rows = {n: wu.image_row(st, i) for n, i in ids.items()}
        tap.is_({n: r["content_type"] for n, r in rows.items()}, {i.name: i.content_type for i in items},
                "every image of the corpus is accepted with its sniffed type (HEIC and AVIF too)")
        for n in ("phone.heic", "phone.avif"):
            if n in ids:
                r = st.request("GET", "/api/v1/images/%s/thumbnail" % ids[n], headers=auth)
                tap.ok(r.status == 200 and sniff(r.body) in ("jpeg", "png"),
                       "%s has a thumbnail for the gallery (%s)" % (n, r.status))
            else:
                tap.skip("%s has a thumbnail" % n, "this libvips cannot write that format to make one")

        # ------------------------------------------------------------ compress, default settings
        op = wu.start_operation(st, sid, [ids[i.name] for i in items])
        done = wu.wait_operation(st, op, timeout=300)
        tap.is_(done["status"], "completed", "compress of the corpus completed")
        res = done["result"]
        per = {e["image_id"]: e for e in res["images"]}
        tap.is_(res["failed"], 0, "no image failed")

        problems, ssims = [], {}
        for it in items:
            e = per[ids[it.name]]
            after = wu.image_bytes(st, ids[it.name])
            row = wu.image_row(st, ids[it.name])
            if len(after) > it.size:
                problems.append("%s grew: %d -> %d" % (it.name, it.size, len(after)))
            if e["status"] == "unchanged":
                if after != it.data() or not e.get("reason") or row["version"] != 1:
                    problems.append("%s unchanged but touched or without reason: %r" % (it.name, e))
                continue
            if e["status"] != "ok" or not len(after) < it.size:
                problems.append("%s: %s, %d -> %d" % (it.name, e["status"], it.size, len(after)))
                continue
            a, b = cc.info(it.path), cc.info(save("c-" + it.name, after))
            for k in ("format", "width", "height", "alpha", "frames", "depth", "orientation", "icc"):
                if a[k] != b[k]:
                    problems.append("%s: %s %r -> %r" % (it.name, k, a[k], b[k]))
            if row["content_type"] != it.content_type or e["content_type"] != it.content_type:
                problems.append("%s: content type %s" % (it.name, row["content_type"]))
            if e["bytes_before"] != it.size or e["bytes_after"] != len(after):
                problems.append("%s: bytes in the result %r" % (it.name, e))
            ssims[it.name] = cc.ssim(it.path, save("c-" + it.name, after))
        tap.is_(problems, [], "every image keeps format, size, alpha, frames, depth, orientation and profile;"
                " none grew; unchanged ones are untouched and say why")
        tap.diag("SSIM at the default quality: " + ", ".join("%s %.4f" % kv for kv in sorted(ssims.items())))
        lossless = {"screenshot.png", "alpha.png", "palette.png", "deep.png", "anim.gif", "screenshot.webp"}
        low = {n: v for n, v in ssims.items() if v < (SSIM_LOSSLESS if n in lossless else SSIM_LOSSY)}
        tap.is_(low, {}, "SSIM stays above %.2f (lossy) and %.4f (lossless) against the originals"
                % (SSIM_LOSSY, SSIM_LOSSLESS))
        tap.ok(per[ids["photo.jpg"]]["status"] == "ok" and per[ids["alpha.png"]]["status"] == "ok"
               and per[ids["anim.gif"]]["status"] == "ok",
               "the photo, the PNG with alpha and the animated GIF did shrink")
        tap.is_(per[ids["anim.gif"]].get("frames"), 8, "the GIF's entry counts its 8 frames")
        cmyk = save("c-cmyk.jpg", wu.image_bytes(st, ids["cmyk.jpg"]))
        i = cc.info(cmyk)
        tap.is_((per[ids["cmyk.jpg"]]["status"], i["bands"], i["interpretation"], adobe_transform(cmyk)),
                ("ok", 4, "cmyk", 2), "the CMYK JPEG stays CMYK, written as YCCK (Adobe transform 2)")
        e = per[ids["cmyk.jpg"]]
        tap.ok(e["bytes_after"] < 0.62 * e["bytes_before"], "which saves more than plain CMYK could: %d -> %d"
               % (e["bytes_before"], e["bytes_after"]))
        for n in ("phone.heic", "phone.avif"):
            if n in ids:
                e = per[ids[n]]
                tap.ok(e["status"] == "unchanged" and n[-4:].upper() in e.get("reason", ""),
                       "%s is left as it is, with the reason: %s" % (n, e.get("reason")))
        unchanged = sum(1 for e in res["images"] if e["status"] == "unchanged")
        tap.is_((res["succeeded"], res["unchanged"]), (len(items), unchanged), "totals: every image, %d unchanged"
                % unchanged)
        tap.is_(res["bytes_before"], sum(i.size for i in items), "bytes_before is the corpus' size")
        tap.is_(res["bytes_saved"], res["bytes_before"] - res["bytes_after"], "bytes_saved = before - after")
        evs = wu.op_events(wu.events(st, sid), op)
        prog = [e["data"] for e in evs if e["type"] == "operation.progress"]
        tap.ok(prog and all("bytes_before" in p and "bytes_after" in p and "bytes_saved" in p for p in prog),
               "every progress event carries the running totals")
        tap.ok(any(p.get("image", {}).get("bytes_before") for p in prog),
               "and progress events name the image just finished with its bytes")
        tap.is_((prog[-1]["bytes_before"], prog[-1]["bytes_after"]), (res["bytes_before"], res["bytes_after"]),
                "the last progress has the final totals")
        comp = [e["data"] for e in evs if e["type"] == "operation.completed"][0]
        pct = round(100.0 * res["bytes_saved"] / res["bytes_before"])
        tap.like(comp.get("message", ""), r"^Saved \d+(\.\d)? (B|KB|MB) \(%d %%\) on %d images, %d unchanged$"
                 % (pct, len(items), unchanged), "the summary: " + comp.get("message", ""))
        tap.is_(done["message"], comp.get("message"), "and the operation's message is the same")

        # Downloads of compressed PNG and GIF: still PNG and GIF, by bytes, Content-Type and name.
        for n, kind, ctype in (("alpha.png", "png", "image/png"), ("anim.gif", "gif", "image/gif")):
            r = st.request("GET", "/api/v1/images/%s/file" % ids[n], headers=auth)
            tap.is_((r.status, sniff(r.body), r.header("Content-Type")), (200, kind, ctype),
                    "%s downloads as %s bytes with Content-Type %s" % (n, kind, ctype))
            tap.like(r.header("Content-Disposition") or "", r'filename="%s"' % n.replace(".", r"\."),
                     "under its own name")
            tap.is_(len(r.body), per[ids[n]]["bytes_after"], "with the compressed size")

        # ------------------------------------------------------------ strip
        sid2 = st.new_session()
        photo = wu.put_image(st, sid2, by_name["photo.jpg"].data(), filename="photo.jpg")
        op = wu.start_operation(st, sid2, [photo], params={"strip": True})
        e = wu.wait_operation(st, op, timeout=120)["result"]["images"][0]
        i = cc.info(save("strip-photo.jpg", wu.image_bytes(st, photo)))
        tap.is_((e["status"], i["width"], i["height"], i["orientation"]), ("ok", 3000, 4000, 1),
                "strip turns the sideways photo upright (3000x4000) instead of dropping its orientation")
        tap.ok(i["icc"], "and keeps its Display P3 profile, which the colours need")
        exif = subprocess_out(["vipsheader", "-f", "exif-ifd0-Orientation", save("strip-photo.jpg",
                                                                                    wu.image_bytes(st, photo))])
        tap.ok("Right" not in exif, "no orientation is left in the EXIF")

        # ------------------------------------------------------------ convert
        conv = {n: ids[n] for n in ("alpha.png", "anim.gif", "phone.heic", "phone.avif") if n in ids}
        op = wu.start_operation(st, sid, [conv["alpha.png"]], "bulk_convert",
                                {"format": "jpeg", "background": "#ff0000"})
        e = wu.wait_operation(st, op)["result"]["images"][0]
        row = wu.image_row(st, conv["alpha.png"])
        r = st.request("GET", "/api/v1/images/%s/file" % conv["alpha.png"], headers=auth)
        tap.is_((e["status"], row["content_type"], sniff(r.body), r.header("Content-Type")),
                ("ok", "image/jpeg", "jpeg", "image/jpeg"), "PNG with alpha converted to JPEG: bytes and type agree")
        tap.like(r.header("Content-Disposition") or "", r'filename="alpha\.jpg"', "and the name follows: alpha.jpg")
        tap.is_(e.get("filename"), "alpha.jpg", "the result names the new file")
        tap.like(e.get("note", ""), "#ff0000", "the entry says the transparency went onto #ff0000")
        px = subprocess_out(["vips", "getpoint", save("conv.jpg", r.body), "0", "100"]).split()
        tap.ok(len(px) == 3 and float(px[0]) > 200 and float(px[1]) < 60,
               "the transparent left edge is now red: %s" % px)

        op = wu.start_operation(st, sid, [conv["anim.gif"]], "bulk_convert", {"format": "webp"})
        e = wu.wait_operation(st, op)["result"]["images"][0]
        i = cc.info(save("anim-conv.webp", wu.image_bytes(st, conv["anim.gif"])))
        tap.is_((e["status"], i["format"], i["frames"], e.get("filename")), ("ok", "webp", 8, "anim.webp"),
                "an animated GIF converted to WebP keeps its 8 frames, named anim.webp")

        for n, fmt, want in (("phone.heic", "jpeg", "jpeg"), ("phone.avif", "webp", "webp")):
            if n not in conv:
                tap.skip("%s converts to %s" % (n, fmt), "this libvips cannot write it to make one")
                continue
            op = wu.start_operation(st, sid, [conv[n]], "bulk_convert", {"format": fmt})
            e = wu.wait_operation(st, op)["result"]["images"][0]
            data = wu.image_bytes(st, conv[n])
            i = cc.info(save("phone-conv." + fmt, data))
            tap.is_((e["status"], sniff(data), i["width"], i["height"], e.get("filename")),
                    ("ok", want, 1024, 768, "phone." + ("jpg" if fmt == "jpeg" else fmt)),
                    "%s converts to %s, 1024x768, renamed" % (n, fmt))

        # ------------------------------------------------------------ resize
        sid3 = st.new_session()
        r_ids = {n: wu.put_image(st, sid3, by_name[n].data(), filename=n) for n in ("photo.jpg", "gray.jpg", "anim.gif")}
        op = wu.start_operation(st, sid3, [r_ids["photo.jpg"], r_ids["gray.jpg"]], "bulk_resize", {"width": 1000})
        wu.wait_operation(st, op, timeout=120)
        p = cc.info(save("r-photo.jpg", wu.image_bytes(st, r_ids["photo.jpg"])))
        g = cc.info(save("r-gray.jpg", wu.image_bytes(st, r_ids["gray.jpg"])))
        tap.is_((p["width"], p["height"], p["orientation"]), (1000, 1333, 1),
                "resize to width 1000: the upright photo keeps its aspect (1000x1333)")
        tap.is_((g["width"], g["height"]), (1000, 750), "the greyscale one too (1000x750)")
        op = wu.start_operation(st, sid3, [r_ids["gray.jpg"]], "bulk_resize", {"width": 4000})
        wu.wait_operation(st, op)
        g = cc.info(save("r2-gray.jpg", wu.image_bytes(st, r_ids["gray.jpg"])))
        tap.is_((g["width"], g["height"]), (1000, 750), "no upscaling unless asked")
        op = wu.start_operation(st, sid3, [r_ids["gray.jpg"]], "bulk_resize", {"width": 2000, "enlarge": True})
        wu.wait_operation(st, op)
        g = cc.info(save("r3-gray.jpg", wu.image_bytes(st, r_ids["gray.jpg"])))
        tap.is_((g["width"], g["height"]), (2000, 1500), "with enlarge: 2000x1500")
        op = wu.start_operation(st, sid3, [r_ids["anim.gif"]], "bulk_resize", {"width": 100})
        e = wu.wait_operation(st, op)["result"]["images"][0]
        a = cc.info(save("r-anim.gif", wu.image_bytes(st, r_ids["anim.gif"])))
        tap.is_((e["status"], a["format"], a["width"], a["height"], a["frames"]), ("ok", "gif", 100, 75, 8),
                "a resized animated GIF stays a GIF of 8 frames, 100x75")

        # ------------------------------------------------------------ alpha and aspect, one by one
        # Transparency is flattened only when the output format has none (JPEG), and only onto the
        # background asked for (white when none is); formats with alpha keep it. A resize fits the
        # box with the aspect kept and never enlarges unless asked.
        sid4 = st.new_session()

        def fresh(name):
            return wu.put_image(st, sid4, by_name[name].data(), filename=name)

        def run_one(image, type_, params):
            op = wu.start_operation(st, sid4, [image], type_, params)
            e = wu.wait_operation(st, op, timeout=120)["result"]["images"][0]
            path = save("%s-%s" % (type_, e.get("filename", image)), wu.image_bytes(st, image))
            return e, cc.info(path), path

        def pixel(path, x, y):
            return [float(v) for v in subprocess_out(["vips", "getpoint", path, str(x), str(y)]).split()]

        e, i, path = run_one(fresh("alpha.png"), "bulk_convert", {"format": "webp"})
        tap.is_((e["status"], i["format"], i["alpha"], i["width"], i["height"], e.get("filename")),
                ("ok", "webp", True, 1024, 768, "alpha.webp"),
                "PNG with alpha converted to WebP keeps its transparency and its 1024x768")
        tap.ok("flattened" not in e.get("note", ""), "and says nothing was flattened")
        tap.ok(pixel(path, 0, 100)[-1] < 8, "its transparent left edge is still transparent: %s" % pixel(path, 0, 100))

        if "phone.avif" in by_name:
            e, i, path = run_one(fresh("alpha.png"), "bulk_convert", {"format": "avif"})
            tap.is_((e["status"], i["alpha"], i["width"], i["height"], e.get("filename")),
                    ("ok", True, 1024, 768, "alpha.avif"), "converted to AVIF it keeps its transparency too")
        else:
            tap.skip("PNG with alpha converted to AVIF keeps alpha", "this libvips cannot write AVIF")

        e, i, path = run_one(fresh("palette.png"), "bulk_convert", {"format": "jpeg"})
        tap.is_((e["status"], i["format"], i["width"], i["height"]), ("ok", "jpeg", 512, 384),
                "a palette PNG with transparency converted to JPEG keeps its size")
        tap.like(e.get("note", ""), "onto #ffffff", "flattened onto white, the background when none is asked for")
        tap.ok(min(pixel(path, 0, 100)) > 235, "its transparent left edge is white: %s" % pixel(path, 0, 100))

        e, i, path = run_one(fresh("alpha.png"), "bulk_resize", {"width": 512})
        tap.is_((e["status"], i["format"], i["alpha"], i["width"], i["height"], e.get("filename")),
                ("ok", "png", True, 512, 384, "alpha.png"),
                "a PNG with alpha resized to width 512 stays a PNG with alpha, 512x384")
        tap.ok(pixel(path, 0, 100)[-1] < 8, "nothing flattened: the left edge is still transparent")

        e, i, path = run_one(fresh("alpha.png"), "bulk_resize", {"width": 512, "format": "jpeg",
                                                                 "background": "#00ff00"})
        px = pixel(path, 0, 100)
        tap.is_((e["status"], i["format"], i["width"], i["height"], e.get("filename")),
                ("ok", "jpeg", 512, 384, "alpha.jpg"), "resized into JPEG: 512x384, renamed alpha.jpg")
        tap.ok(len(px) == 3 and px[1] > 200 and px[0] < 60 and px[2] < 60,
               "the transparency went onto the chosen green: %s" % px)

        gray = fresh("gray.jpg")
        e, i, _ = run_one(gray, "bulk_resize", {"width": 500, "height": 500})
        tap.is_((i["width"], i["height"]), (500, 375), "resize into a 500x500 box keeps the aspect: 500x375")
        e, i, _ = run_one(gray, "bulk_resize", {"height": 300})
        tap.is_((i["width"], i["height"]), (400, 300), "height 300 alone: 400x300")
        e, i, _ = run_one(gray, "bulk_resize", {"width": 3000, "height": 3000})
        tap.is_((i["width"], i["height"]), (400, 300), "a box larger than the image does not enlarge it")
        e, i, _ = run_one(gray, "bulk_resize", {"width": 800, "height": 800, "enlarge": True})
        tap.is_((i["width"], i["height"]), (800, 600), "with enlarge it grows to fit the box, aspect kept: 800x600")

        # ------------------------------------------------------------ HEIC and AVIF
        # Compress keeps their format as it is (unchanged, with the reason, above). Compress with a
        # format converts only when that is smaller, as everywhere: the HEIC (quality 60, 202 KB)
        # becomes a smaller JPEG or WebP, the AVIF (93 KB) would not, so it stays, saying why.
        # Convert always converts. Either way: upright, at its size, type and name following.
        for n in ("phone.heic", "phone.avif"):
            if n not in by_name:
                tap.skip("%s: compress to a format" % n, "this libvips cannot write it to make one")
                continue
            for fmt, type_ in (("webp", "bulk_compress"), ("jpeg", "bulk_compress"), ("webp", "bulk_convert"),
                               ("jpeg", "bulk_convert")):
                image = fresh(n)
                e, i, path = run_one(image, type_, {"format": fmt})
                row = wu.image_row(st, image)
                if type_ == "bulk_compress" and n == "phone.avif":
                    tap.ok(e["status"] == "unchanged" and "not fewer" in e.get("reason", "")
                           and row["version"] == 1 and wu.image_bytes(st, image) == by_name[n].data(),
                           "%s compressed to %s is larger, so it stays as it was: %s" % (n, fmt, e.get("reason")))
                    continue
                tap.is_((e["status"], i["format"], i["width"], i["height"], row["content_type"], e.get("filename")),
                        ("ok", fmt, 1024, 768, "image/" + fmt, "phone." + ("jpg" if fmt == "jpeg" else fmt)),
                        "%s with %s to %s: 1024x768, type and name follow" % (n, type_, fmt))
                if type_ == "bulk_compress":
                    tap.ok(e["bytes_after"] < e["bytes_before"], "and smaller: %d -> %d" % (e["bytes_before"],
                                                                                           e["bytes_after"]))
                if fmt == "jpeg" and type_ == "bulk_convert":
                    tap.ok(cc.ssim(by_name[n].path, path) > SSIM_LOSSY, "and looks like the original")
finally:
    shutil.rmtree(work, ignore_errors=True)
tap.done()
