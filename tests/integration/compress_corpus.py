"""compress_corpus.py: the images compression is judged on, made here with the vips command line and
ImageMagick (no binary files in the tree), and what is measured on them: format, size, alpha and
frames of a file (vipsheader), and SSIM between two images computed with libvips operations.

Used by tests/integration/test_compress.py and bench/compress.

    import compress_corpus as cc
    items = cc.make(directory)              # [Item(name, path, content_type, ...)]
    cc.info(path) -> {"format", "width", "height", "bands", "alpha", "frames", "depth"}
    cc.ssim(a_path, b_path) -> float        # 1.0: the same picture

SSIM is the mean structural similarity (Wang et al. 2004) of the luminance of both images, with the
usual 11-tap Gaussian window (sigma 1.5) and constants (0.01 * 255)^2 and (0.03 * 255)^2, on the
first frame, turned upright from EXIF, transparency flattened onto white, 16-bit scaled to 8, by
tests/tools/it-ssim (libvips operations in memory; ImageMagick 6 here has no SSIM metric)."""

import os
import struct
import subprocess
import tempfile


def run(*argv):
    subprocess.run([str(a) for a in argv], check=True, capture_output=True)


def vips(*argv):
    run("vips", *argv)


class Item:
    def __init__(self, name, path, content_type, alpha=False, frames=1, depth=8, note=""):
        self.name, self.path, self.content_type = name, path, content_type
        self.alpha, self.frames, self.depth, self.note = alpha, frames, depth, note

    @property
    def size(self):
        return os.path.getsize(self.path)

    def data(self):
        with open(self.path, "rb") as f:
            return f.read()


def exif_orientation_segment(orientation):
    """An APP1 EXIF segment holding only the orientation tag (big-endian TIFF, one IFD entry)."""
    tiff = b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
    tiff += struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0)
    body = b"Exif\x00\x00" + tiff
    return b"\xff\xe1" + struct.pack(">H", len(body) + 2) + body


def with_orientation(jpeg, orientation):
    """jpeg with an EXIF orientation segment after its APP0 (or right after SOI)."""
    pos = 2
    if jpeg[2:4] == b"\xff\xe0":
        pos = 4 + struct.unpack(">H", jpeg[4:6])[0]
    return jpeg[:pos] + exif_orientation_segment(orientation) + jpeg[pos:]


def photo_v(d, name, w, h, seed):
    """A photo-like sRGB image (smooth colour noise) as a .v file."""
    bands = []
    for b in range(3):
        n, bl = os.path.join(d, "%s-n%d.v" % (name, b)), os.path.join(d, "%s-b%d.v" % (name, b))
        vips("gaussnoise", n, w, h, "--mean", 96 + 32 * b, "--sigma", 60, "--seed", seed * 3 + b)
        vips("gaussblur", n, bl, 1.2)
        os.unlink(n)
        bands.append(bl)
    j, c, out = (os.path.join(d, "%s-%s.v" % (name, x)) for x in ("j", "c", "srgb"))
    vips("bandjoin", " ".join(bands), j)
    vips("cast", j, c, "uchar")
    vips("copy", c, out, "--interpretation", "srgb")
    for f in bands + [j, c]:
        os.unlink(f)
    return out


def have_heif_writer(d, suffix):
    p = os.path.join(d, "probe" + suffix)
    try:
        vips("black", os.path.join(d, "probe.v"), 16, 16, "--bands", 3)
        vips("copy", os.path.join(d, "probe.v"), p + "[Q=50]")
        return os.path.getsize(p) > 0
    except subprocess.CalledProcessError:
        return False


def make(d, photo_size=(4000, 3000), small=(1024, 768)):
    """Makes the corpus in directory d; returns the Items. HEIC and AVIF are left out (with
    Item.note on the others unchanged) when this libvips cannot write them."""
    items = []
    sw, sh = small

    # A 12-megapixel photo stored sideways (EXIF orientation 6) in Display P3 (an ICC profile that
    # is not sRGB), at quality 92 as cameras write.
    src = photo_v(d, "photo", photo_size[0], photo_size[1], 1)
    p3 = os.path.join(d, "photo-p3.v")
    vips("icc_transform", src, p3, "p3", "--input-profile", "srgb")
    plain = os.path.join(d, "photo-plain.jpg")
    vips("copy", p3, plain + "[Q=92]")
    path = os.path.join(d, "photo.jpg")
    with open(plain, "rb") as f, open(path, "wb") as g:
        g.write(with_orientation(f.read(), 6))
    for f in (src, p3, plain):
        os.unlink(f)
    items.append(Item("photo.jpg", path, "image/jpeg"))

    # Smaller photo material for the other formats.
    base = photo_v(d, "small", sw, sh, 2)

    # A screenshot: text and flat colour, RGB.
    t, e, inv, rgb = (os.path.join(d, "shot-%s.v" % x) for x in ("t", "e", "i", "rgb"))
    vips("text", t, "Settings  General  Privacy  Network  Display  Sound  Keyboard  Mouse  Printers. "
         "The quick brown fox jumps over the lazy dog, 0123456789.", "--width", 1200, "--dpi", 110)
    vips("embed", t, e, 24, 64, 1280, 800, "--extend", "black")
    vips("invert", e, inv)
    vips("bandjoin", " ".join([inv, inv, inv]), rgb)
    path = os.path.join(d, "screenshot.png")
    run("convert", rgb_to_png(d, rgb, "shot-rgb.png"),
        "-fill", "#3366cc", "-draw", "rectangle 0,0 1280,48", "-fill", "#eeeeee",
        "-draw", "rectangle 0,760 1280,800", path)
    items.append(Item("screenshot.png", path, "image/png"))

    # RGBA with a soft alpha gradient (photo pixels, transparency from left to right).
    alpha_v, a = os.path.join(d, "alpha-a.v"), os.path.join(d, "alpha.v")
    vips("xyz", alpha_v, sw, sh)
    vips("extract_band", alpha_v, os.path.join(d, "alpha-x.v"), 0)
    vips("linear", os.path.join(d, "alpha-x.v"), os.path.join(d, "alpha-l.v"), 255.0 / sw, 0, "--uchar")
    vips("bandjoin", " ".join([base, os.path.join(d, "alpha-l.v")]), a)
    path = os.path.join(d, "alpha.png")
    vips("copy", a, path)
    items.append(Item("alpha.png", path, "image/png", alpha=True))

    # A palette PNG with transparency (64 colours, tRNS), as icons and logos are.
    path = os.path.join(d, "palette.png")
    run("convert", os.path.join(d, "alpha.png"), "-resize", "50%", "-colors", "64", "PNG8:" + path)
    items.append(Item("palette.png", path, "image/png", alpha=True))

    # 16-bit RGB (scans, renders).
    path = os.path.join(d, "deep.png")
    run("convert", "-size", "640x480", "gradient:#203040-#e0c0a0", "-depth", "16", "PNG48:" + path)
    items.append(Item("deep.png", path, "image/png", depth=16))

    # An animated GIF: 8 frames of a moving disc, looping.
    frames = []
    for i in range(8):
        frames += ["(", "-size", "200x150", "xc:#88bbdd", "-fill", "#cc3322",
                   "-draw", "circle %d,75 %d,75" % (20 + 20 * i, 45 + 20 * i), ")"]
    path = os.path.join(d, "anim.gif")
    run("convert", "-delay", "10", *frames, "-loop", "0", path)
    items.append(Item("anim.gif", path, "image/gif", alpha=False, frames=8))

    # The same animation as a lossy WebP.
    path = os.path.join(d, "anim.webp")
    vips("copy", os.path.join(d, "anim.gif") + "[n=-1]", path + "[Q=95]")
    items.append(Item("anim.webp", path, "image/webp", alpha=True, frames=8))

    # A lossless WebP screenshot: stays lossless.
    path = os.path.join(d, "screenshot.webp")
    vips("copy", os.path.join(d, "screenshot.png"), path + "[lossless]")
    items.append(Item("screenshot.webp", path, "image/webp"))

    # CMYK JPEG (print workflows) and greyscale JPEG.
    small_jpg = os.path.join(d, "small.jpg")
    vips("copy", base, small_jpg + "[Q=95]")
    path = os.path.join(d, "cmyk.jpg")
    run("convert", small_jpg, "-colorspace", "CMYK", "-quality", "92", path)
    items.append(Item("cmyk.jpg", path, "image/jpeg"))
    path = os.path.join(d, "gray.jpg")
    vips("colourspace", base, path + "[Q=92]", "b-w")
    items.append(Item("gray.jpg", path, "image/jpeg"))

    # What phones send: HEIC (iPhone) and AVIF, when this libvips can write them.
    for suffix, ctype in ((".heic", "image/heic"), (".avif", "image/avif")):
        if have_heif_writer(d, suffix):
            path = os.path.join(d, "phone" + suffix)
            vips("copy", base, path + "[Q=60]")
            items.append(Item("phone" + suffix, path, ctype))

    for f in os.listdir(d):
        if f.endswith(".v") or f.startswith("probe") or f.startswith("shot-"):
            os.unlink(os.path.join(d, f))
    os.unlink(small_jpg)
    return items


def rgb_to_png(d, v, name):
    out = os.path.join(d, name)
    vips("copy", v, out)
    return out


def transparent(path, fmt, bands):
    """Whether any pixel of any frame of path is not fully opaque: GIF and WebP encoders may add an
    alpha channel to an opaque animation (unchanged areas between frames), which shows nothing."""
    fd, tmp = tempfile.mkstemp(suffix=".v")
    os.close(fd)
    try:
        src = path + ("[n=-1]" if fmt in ("gif", "webp") else "")
        vips("extract_band", src, tmp, bands - 1)
        r = subprocess.run(["vips", "min", tmp], check=True, capture_output=True, text=True)
        r2 = subprocess.run(["vips", "max", tmp], check=True, capture_output=True, text=True)
        return float(r.stdout) < float(r2.stdout) or float(r.stdout) < 255
    finally:
        os.unlink(tmp)


def info(path):
    """Format, size, bands, alpha (transparency in use), frame count, sample depth, orientation and
    whether an ICC profile is attached, of an image file as libvips reads it."""
    def field(name, extra=""):
        r = subprocess.run(["vipsheader", "-f", name, path + extra], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None
    loader = field("vips-loader") or ""
    fmt = {"jpegload": "jpeg", "pngload": "png", "gifload": "gif", "webpload": "webp",
           "heifload": "heif"}.get(loader.replace("_source", "").replace("_buffer", ""), loader)
    bands = int(field("bands") or 0)
    interp = (field("interpretation") or "").lower().rstrip(")").split("_")[-1]
    pages = field("n-pages")
    frames = int(pages) if pages and pages.isdigit() else 1
    alpha = (bands == 4 and interp != "cmyk" or bands == 2) and transparent(path, fmt, bands)
    return {"format": fmt, "width": int(field("width") or 0), "height": int(field("height") or 0),
            "bands": bands, "alpha": alpha, "frames": frames, "interpretation": interp,
            "depth": 16 if (field("format") or "") == "ushort" else 8,
            "orientation": int(field("orientation") or 1), "icc": field("icc-profile-data") is not None}


def ssim(a, b):
    """Mean SSIM of image files a and b (same size once upright), by tests/tools/it-ssim."""
    tool = os.path.join(os.environ.get("IT_BUILDDIR") or os.path.join(os.path.dirname(__file__), "..", ".."),
                        "tests", "tools", "it-ssim")
    r = subprocess.run([tool, a, b], check=True, capture_output=True, text=True)
    return float(r.stdout.strip())
