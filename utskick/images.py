"""The one image pipeline (Pillow) for the email, the preview and the published site.

An editor's photo comes straight from a phone: 12 megapixels, sideways until EXIF says
otherwise, in Display P3, with the GPS position of where it was taken. Sent as is, every
message grows by megabytes and tells every reader where the editor stood; and any file named
like an image would leave with it. So only real JPEG, PNG and GIF files inside the project are
taken, each is decoded, turned upright, converted to sRGB, scaled to what the layout needs and
encoded anew without a byte of its metadata. Results are cached by content hash, so a preview
refresh costs a hash and a file read.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

from PIL import ExifTags, Image, ImageCms, ImageOps, ImageSequence, UnidentifiedImageError

from .errors import UtskickError, display_path
from .files import write_atomic
from .model import Image as ImageField
from .model import Logo, Settings

CONTENT_WIDTH = 552  # px: the email's 600 px column less its padding; the widest an image is shown
LOGO_WIDTH = 200  # px a logo is shown at unless the settings give its width
MAX_WIDTH = 1200  # px: twice the 600 px layout, sharp on high-density screens
JPEG_QUALITY = 82
MAX_FILE = 50 * 1024 * 1024  # bytes read from an editor's file at most
GIF_MAX_BYTES = 1024 * 1024  # an animated GIF larger than this after resizing is refused
GIF_MAX_PIXELS = 100_000_000  # frames × pixels decoded at most for one animated GIF
FOLDER = "images"  # where the images live beside the published web version
# Part of every cache key: bump it whenever `_process` would write different bytes.
VERSION = "1"

FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".gif": "GIF"}
MIME = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif"}
EXTENSION = {"JPEG": ".jpg", "PNG": ".png", "GIF": ".gif"}
HINTS = {
    "SVG": "SVG is shown by neither Outlook nor Gmail: export it as PNG",
    "WebP": "Outlook does not show WebP: save it as JPEG (a photo) or PNG (a graphic)",
    "AVIF": "most mail clients do not show AVIF: save it as JPEG (a photo) or PNG (a graphic)",
    "HEIC": "mail clients do not show HEIC: export the photo as JPEG (on an iPhone: share it, "
            "Options, 'Most Compatible'; or Settings, Camera, Formats, 'Most Compatible')",
}
SUFFIX_KINDS = {".svg": "SVG", ".svgz": "SVG", ".webp": "WebP", ".avif": "AVIF", ".heic": "HEIC", ".heif": "HEIC"}


class Refused(Exception):
    """An image that cannot be sent, with the editor-facing reason; callers add the location."""


@dataclass(frozen=True)
class Picture:
    """One local image after the pipeline: the bytes to send and the size to show them at."""

    source: Path
    key: str  # hash of the source bytes and the pipeline settings
    data: bytes
    format: str  # JPEG, PNG or GIF, as the source
    width: int  # pixels of `data`
    height: int
    display_width: int  # px in the layout (the <img width>)

    @property
    def display_height(self) -> int:
        return max(1, round(self.height * self.display_width / self.width))

    @property
    def mime(self) -> str:
        return MIME[self.format]

    @property
    def cid(self) -> str:
        return f"{self.key[:20]}@utskick"

    @property
    def name(self) -> str:
        """The file name on the site: the editor's name for it, and a hash so no two collide."""
        return f"{self.source.stem}-{self.key[:12]}{EXTENSION[self.format]}"

    @property
    def blurry(self) -> bool:
        """Fewer pixels than the layout shows it at: it will look soft."""
        return self.width < self.display_width


@dataclass(frozen=True)
class Shown:
    """An image as the templates lay it out: its link and the size it is shown at."""

    src: str
    width: int
    height: int | None  # unknown for an https:// image utskick never sees


def display_width(image: ImageField | Logo) -> int:
    """The one width in px an image is laid out at, which its file is made for."""
    if isinstance(image, Logo):
        return image.width or LOGO_WIDTH
    return min(image.width or CONTENT_WIDTH, CONTENT_WIDTH)


def target_width(display_width: int) -> int:
    return min(2 * display_width, MAX_WIDTH)


def prepare(path: Path, root: Path, display_width: int, cache: Path) -> Picture:
    """The email-ready version of the image file at `path`, refusing anything but a real JPEG,
    PNG or GIF inside `root` (symlinks followed); `cache` keeps results between runs."""
    real = _inside(path, root)
    kind = SUFFIX_KINDS.get(path.suffix.lower())
    if kind:
        raise Refused(f"{path.name}: {HINTS[kind]}")
    expected = FORMATS.get(path.suffix.lower())
    if expected is None:
        raise Refused(f"{path.name} is not an image utskick can send: use a .jpg, .png or .gif file")
    data = _read(real, path)
    width = target_width(display_width)
    key = hashlib.sha256(f"{VERSION}:{width}:".encode() + data).hexdigest()
    cached = _cached(cache, key, expected)
    if cached is not None:
        out, size = cached
    else:
        out, size = _process(data, path.name, expected, width)
        _store(cache, key, expected, out, size)
    return Picture(path, key, out, expected, size[0], size[1], display_width)


def site_files(pictures: Iterable[Picture]) -> tuple[tuple[str, bytes], ...]:
    """(path under the site folder, bytes) of each picture, as the hosted links expect them."""
    return tuple(sorted({(f"{FOLDER}/{p.name}", p.data) for p in pictures}))


def url(base: str, picture: Picture) -> str:
    """A picture's link when it is published under `base` (the web version's folder)."""
    return urljoin(base, f"{FOLDER}/{quote(picture.name)}")


def hosted_url(settings: Settings, picture: Picture) -> str:
    """Where `images: hosted` links a picture: images/ beside the web versions."""
    assert settings.web_version, "the model requires web_version for hosted images"
    return url(settings.web_version.split("{slug}", 1)[0], picture)


def write_files(pictures: Iterable[Picture], site: Path) -> list[Path]:
    """Write the processed images into the folder published as the web version's base."""
    written = []
    for name, data in site_files(pictures):
        write_atomic(site / name, data)
        written.append(site / name)
    return written


def _inside(path: Path, root: Path) -> Path:
    try:
        real = path.resolve()
        top = root.resolve()
    except (OSError, RuntimeError):  # a symlink loop
        raise Refused(f"{path.name}: cannot follow the path (a symbolic link loop?)") from None
    if not real.is_relative_to(top):
        raise Refused(f"{path.name} is outside the project folder {top}: only images inside it can be sent")
    return real


def _read(real: Path, path: Path) -> bytes:
    try:
        with real.open("rb") as f:
            data = f.read(MAX_FILE + 1)
    except FileNotFoundError:
        raise Refused(f"image file not found: {display_path(path)}") from None
    except OSError as e:
        raise Refused(f"cannot read {path.name}: {e.strerror}") from None
    if len(data) > MAX_FILE:
        raise Refused(f"{path.name} is over {MAX_FILE // 1024 // 1024} MB: export it smaller")
    return data


def _sniff(data: bytes) -> str | None:
    """Formats we refuse, recognised by content when the name hides them."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
        return "HEIC"
    head = data[:1024].lstrip().lower()
    if head.startswith((b"<?xml", b"<svg", b"<!doctype svg")) and b"<svg" in data[:4096].lower():
        return "SVG"
    return None


def _open(data: bytes, name: str, expected: str) -> Image.Image:
    kind = _sniff(data)
    if kind:
        raise Refused(f"{name} is really in the {kind} format: {HINTS[kind]}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=list(MIME))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise Refused(f"{name} has too many pixels to be a photo: export it smaller") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Refused(f"{name} is not a real {expected} image (a damaged file, or another kind of file with an image's name)") from None
    found = "JPEG" if image.format == "MPO" else str(image.format)  # MPO: a phone's JPEG with extra views
    if found != expected:
        raise Refused(f"{name} is a {found} image with a {expected} name: rename it to {Path(name).stem}{EXTENSION[found]}")
    return image


def _process(data: bytes, name: str, expected: str, width: int) -> tuple[bytes, tuple[int, int]]:
    image = _open(data, name, expected)
    try:
        if expected == "GIF" and getattr(image, "n_frames", 1) > 1:
            return _animation(image, name, width)
        return _still(image, expected, width)
    except (OSError, SyntaxError, ValueError) as e:  # truncated or corrupt past its header
        raise Refused(f"{name} cannot be read as a {expected} image ({e})") from None


def _fit(size: tuple[int, int], width: int) -> tuple[int, int]:
    w, h = size
    if w <= width:
        return size
    return width, max(1, round(h * width / w))


def _still(image: Image.Image, fmt: str, width: int) -> tuple[bytes, tuple[int, int]]:
    """The first frame (of an MPO or APNG too), upright, scaled, in sRGB."""
    icc = image.info.get("icc_profile")
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    upright = image.size[::-1] if orientation in (5, 6, 7, 8) else image.size
    goal = _fit(upright, width)
    # JPEG decodes straight at 1/2, 1/4 or 1/8 scale when that still leaves enough pixels.
    image.draft(None, goal[::-1] if orientation in (5, 6, 7, 8) else goal)
    image = ImageOps.exif_transpose(image)
    image = _plain_mode(image)
    if image.size != goal:
        image = image.resize(goal, Image.Resampling.LANCZOS, reducing_gap=3.0)
    image = _srgb(image, icc)
    return _encode(image, fmt), image.size


def _plain_mode(image: Image.Image) -> Image.Image:
    """A mode every encoder takes and the resampler handles: L, LA, RGB, RGBA or CMYK."""
    if image.mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        return image
    if image.mode in ("P", "PA"):
        return image.convert("RGBA" if image.has_transparency_data else "RGB")
    if image.mode == "I" or image.mode.startswith("I;16"):  # 16-bit grey PNG: scale, do not clip
        return image.convert("I").point(lambda v: v / 257).convert("L")
    return image.convert("RGBA" if "A" in image.getbands() else ("L" if image.mode == "1" else "RGB"))


_SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


def _srgb(image: Image.Image, icc: bytes | None) -> Image.Image:
    """sRGB through the embedded profile (an iPhone's Display P3, a print file's CMYK); an image
    without one is taken as sRGB already, the web's default."""
    if image.mode not in ("RGB", "RGBA", "CMYK"):
        return image  # greyscale stays grey
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    colour = image.convert("RGB") if image.mode == "RGBA" else image
    result = None
    if icc:
        try:
            profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            result = ImageCms.profileToProfile(colour, profile, _SRGB, outputMode="RGB")
        except (ImageCms.PyCMSError, OSError, ValueError):
            pass  # a broken or mismatched profile: the plain conversion below
    if result is None:
        result = colour.convert("RGB")
    if alpha is not None:
        result.putalpha(alpha)
    return result


def _encode(image: Image.Image, fmt: str) -> bytes:
    """Fresh bytes with nothing but pixels: no EXIF, GPS, XMP, ICC profile or comments."""
    if image.mode in ("RGBA", "LA") and image.getchannel("A").getextrema() == (255, 255):
        image = image.convert(image.mode[:-1])
    image.info = {}
    out = io.BytesIO()
    if fmt == "JPEG":
        image.convert("L" if image.mode == "L" else "RGB").save(
            out, "JPEG", quality=JPEG_QUALITY, optimize=True, progressive=True)
    elif fmt == "PNG":
        image.save(out, "PNG", optimize=True)
    else:
        image.save(out, "GIF", optimize=True)
    return out.getvalue()


def _animation(image: Image.Image, name: str, width: int) -> tuple[bytes, tuple[int, int]]:
    """Every frame kept, each scaled; a GIF too big to send is refused rather than cut."""
    n = getattr(image, "n_frames", 1)
    if n * image.size[0] * image.size[1] > GIF_MAX_PIXELS:
        raise Refused(f"{name} is an animation of {n} frames at {image.size[0]}×{image.size[1]}: "
                      "too large to send; shorten it or make it smaller, or use a still JPEG or PNG")
    goal = _fit(image.size, width)
    loop = image.info.get("loop")
    frames: list[Image.Image] = []
    durations: list[int] = []
    for frame in ImageSequence.Iterator(image):
        durations.append(int(frame.info.get("duration", 100)))
        still = frame.convert("RGBA")
        still = still.resize(goal, Image.Resampling.LANCZOS) if still.size != goal else still
        still.info = {}  # a GIF's comments and extensions stay behind
        frames.append(still)
    out = io.BytesIO()
    extra = {} if loop is None else {"loop": loop}
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=durations,
                   disposal=2, optimize=True, **extra)
    data = out.getvalue()
    if len(data) > GIF_MAX_BYTES:
        raise Refused(f"{name} is {len(data) // 1024} KB as an email-sized animation (at most {GIF_MAX_BYTES // 1024} KB): "
                      "shorten it or make it smaller, or use a still JPEG or PNG")
    return data, goal


def _cached(cache: Path, key: str, fmt: str) -> tuple[bytes, tuple[int, int]] | None:
    try:
        meta = json.loads((cache / f"{key}.json").read_text("utf-8"))
        data = (cache / f"{key}{EXTENSION[fmt]}").read_bytes()
        return data, (int(meta["width"]), int(meta["height"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _store(cache: Path, key: str, fmt: str, data: bytes, size: tuple[int, int]) -> None:
    """The image first, its size last: a size file means a complete entry."""
    try:
        # Inside .utskick/, which holds the journal and the secret: created private like them.
        write_atomic(cache / f"{key}{EXTENSION[fmt]}", data, private=True)
        write_atomic(cache / f"{key}.json", json.dumps({"width": size[0], "height": size[1]}), private=True)
    except (OSError, UtskickError):
        pass  # a read-only project still renders, only without the speed-up
