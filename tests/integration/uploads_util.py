"""uploads_util.py: helpers for the upload tests: images generated on the spot (vips CLI, or the
standard library for PNG), hand-made multipart bodies, raw HTTP for truncated requests."""

import hashlib
import os
import socket
import struct
import subprocess
import zlib


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def vips_image(path, width, height):
    """A noisy RGB image in the format path's extension names (jpg, png, gif, webp)."""
    base = path + ".v"
    subprocess.run(["vips", "gaussnoise", base, str(width), str(height), "--mean", "128", "--sigma", "40"],
                   check=True)
    rgb = path + ".rgb.v"
    subprocess.run(["vips", "bandjoin", base + " " + base + " " + base, rgb], check=True)
    subprocess.run(["vips", "cast", rgb, path + "." + "u.v", "uchar"], check=True)
    subprocess.run(["vips", "copy", path + ".u.v", path], check=True)
    for p in (base, rgb, path + ".u.v"):
        os.unlink(p)
    return path


def _chunk(kind, data):
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)


def png_bytes(width, height, pixels=None, level=6):
    """An RGB PNG written with the standard library; pixels defaults to random bytes."""
    row = width * 3
    if pixels is None:
        pixels = os.urandom(row * height)
    raw = b"".join(b"\x00" + pixels[y * row:(y + 1) * row] for y in range(height))
    data = zlib.compress(raw, level)
    # Encoders split the image data into many IDAT chunks; so do we (decoders may hold a whole chunk).
    idat = b"".join(_chunk(b"IDAT", data[i:i + 65536]) for i in range(0, len(data), 65536))
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + idat + _chunk(b"IEND", b""))


def png_bomb(width=100000, height=100000):
    """A tiny PNG whose header declares a huge image (a decompression bomb's calling card)."""
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + _chunk(b"IDAT", zlib.compress(b"\x00" * 1000)) + _chunk(b"IEND", b""))


def multipart(fields, files, boundary="----itTestBoundary7MA4YWxkTrZu0gW"):
    """fields: [(name, value)], files: [(field, filename header text (raw, may hold quotes/escapes), bytes,
    extra header lines)]. Returns (content_type, body)."""
    out = []
    for name, value in fields:
        out.append(b"--" + boundary.encode() + b"\r\n")
        out.append(b'Content-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n')
        out.append(value.encode() if isinstance(value, str) else value)
        out.append(b"\r\n")
    for field, disposition_filename, data, *extra in files:
        out.append(b"--" + boundary.encode() + b"\r\n")
        fn = disposition_filename if isinstance(disposition_filename, bytes) else disposition_filename.encode()
        out.append(b'Content-Disposition: form-data; name="' + field.encode() + b'"; ' + fn + b"\r\n")
        for line in (extra[0] if extra else []):
            out.append(line.encode() + b"\r\n")
        out.append(b"Content-Type: application/octet-stream\r\n\r\n")
        out.append(data)
        out.append(b"\r\n")
    out.append(b"--" + boundary.encode() + b"--\r\n")
    return "multipart/form-data; boundary=" + boundary, b"".join(out)


def read_to_end(sock):
    """Reads what the server sends until it closes the connection; returns (status, raw bytes).
    The status is 0 when the answer is not HTTP."""
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return (int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/") else 0), data


def raw_post(port, path, content_type, body, content_length=None, close_after=False, timeout=30):
    """Sends a POST by hand. With close_after, sends body (possibly shorter than content_length)
    and closes the connection; returns None. Otherwise returns (status, body bytes)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        head = ("POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n"
                "Connection: close\r\n\r\n" % (path, content_type,
                                               len(body) if content_length is None else content_length))
        s.sendall(head.encode() + body)
        if close_after:
            return None
        status, data = read_to_end(s)
        return status, data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    finally:
        s.close()


def vm_hwm_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0
