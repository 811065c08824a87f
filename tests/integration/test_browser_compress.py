#!/usr/bin/env python3
"""test_browser_compress.py: "Compress selected" on the page in Chromium, on a mixed selection (a
photo, a screenshot and a PNG with alpha, a palette and a 16-bit PNG, an animated GIF) uploaded
through the page: the summary reads "Saved ... on 6 images, N unchanged" with the numbers of the
operation's result, every image is listed, and the PNG and GIF downloads are still PNG and GIF
(bytes, Content-Type, file name); a cancelled operation lists the images it finished
(tests/browser/compress.mjs). The corpus comes from compress_corpus.py.
"""

import os
import shutil
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


skip_all_unless_runnable()
tap = Tap()
with Stack(tap, bridge=True, worker=True) as st:
    CompressRun(tap, st).run("compress.mjs")
tap.done()
