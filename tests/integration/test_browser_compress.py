#!/usr/bin/env python3
"""test_browser_compress.py: "Compress selected" on the page in Chromium, on a mixed selection (a
photo, a screenshot and a PNG with alpha, a palette and a 16-bit PNG, an animated GIF) uploaded
through the page: the summary reads "Saved ... on 6 images, N unchanged" with the numbers of the
operation's result, every image is listed, and the PNG and GIF downloads are still PNG and GIF
(bytes, Content-Type, file name); a cancelled operation lists the images it finished. Then a
real cancel in the middle of compressing 16 large photos: the images the page lists as done are
exactly those whose stored bytes changed, and the others are untouched. HEIC and AVIF uploaded
through the page show in the gallery with a thumbnail (tests/browser/compress.mjs).
The corpus comes from compress_corpus.py.
"""

import hashlib
import os
import subprocess
import tempfile

from harness import Tap, Stack
from browser import BrowserRun, skip_all_unless_runnable
import compress_corpus as cc

MIXED = ("photo.jpg", "screenshot.png", "alpha.png", "palette.png", "deep.png", "anim.gif")


class CompressRun(BrowserRun):
    def ctl_corpus(self, req):
        """Makes the corpus (a smaller photo: the page test is about the page) and returns the paths
        of the mixed selection, with their sizes."""
        d = tempfile.mkdtemp(dir=self.st.dir)
        items = {i.name: i for i in cc.make(d, photo_size=(1600, 1200), small=(640, 480))}
        return [{"name": n, "path": items[n].path, "size": items[n].size} for n in MIXED]

    def ctl_phones(self, req):
        """The HEIC and AVIF of the corpus, those this libvips can write (made with the corpus)."""
        d = tempfile.mkdtemp(dir=self.st.dir)
        items = cc.make(d, photo_size=(320, 240), small=(640, 480))
        return [{"name": i.name, "path": i.path} for i in items if i.name.startswith("phone.")]

    def ctl_slow(self, req):
        """Makes `count` different 7.7-megapixel photo JPEGs at quality 95 (about 2 MB each, a
        quarter of a second of the worker's CPU each): enough work that a cancel lands while the
        operation runs. Crops of one smooth-noise image at different offsets."""
        d = tempfile.mkdtemp(dir=self.st.dir)
        n, w, h = int(req.get("count", 16)), 3200, 2400
        bands = []
        for b in range(3):
            noise, blur = os.path.join(d, "n%d.v" % b), os.path.join(d, "b%d.v" % b)
            subprocess.run(["vips", "gaussnoise", noise, str(w + 8 * n), str(h + 8 * n), "--mean",
                            str(96 + 32 * b), "--sigma", "60", "--seed", str(b + 7)], check=True)
            subprocess.run(["vips", "gaussblur", noise, blur, "3"], check=True)
            os.unlink(noise)
            bands.append(blur)
        rgb, u, srgb = (os.path.join(d, x) for x in ("rgb.v", "u.v", "srgb.v"))
        subprocess.run(["vips", "bandjoin", " ".join(bands), rgb], check=True)
        subprocess.run(["vips", "cast", rgb, u, "uchar"], check=True)
        subprocess.run(["vips", "copy", u, srgb, "--interpretation", "srgb"], check=True)
        out = []
        for i in range(n):
            path = os.path.join(d, "big-%02d.jpg" % (i + 1))
            subprocess.run(["vips", "crop", srgb, path + "[Q=95]", str(8 * i), str(8 * i), str(w), str(h)],
                           check=True)
            with open(path, "rb") as f:
                out.append({"name": os.path.basename(path), "path": path,
                            "sha256": hashlib.sha256(f.read()).hexdigest()})
        for f in bands + [rgb, u, srgb]:
            os.unlink(f)
        return out

    def ctl_stored(self, req):
        """What the database holds for each image id: version and sha256 of the stored bytes."""
        out = {}
        for i in req["ids"]:
            row = self.st.sql("SELECT version || ' ' || sha256 FROM images WHERE id = :'p1'", i).split()
            out[i] = {"version": int(row[0]), "sha256": row[1]} if row else None
        return out


skip_all_unless_runnable()
tap = Tap()
with Stack(tap, bridge=True, worker=True) as st:
    CompressRun(tap, st).run("compress.mjs")
tap.done()
