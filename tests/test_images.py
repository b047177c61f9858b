"""The image pipeline on real files made here: phone photos, print files, fakes and escapes."""

from __future__ import annotations

import base64
import email
import io
import re
import struct
import urllib.request
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import lxml.html
import pytest
from PIL import ExifTags, Image, ImageCms
from PIL.PngImagePlugin import PngInfo

from utskick import images
from utskick.errors import UtskickError
from utskick.load import load_issue
from utskick.project import load_project
from utskick.message import personalise
from utskick.render import Rendered, render
from utskick.signer import sample
from utskick.subscribers import SAMPLE

from browser import launch
from conftest import Run
from preview_support import edit, previewing, until

RED, BLUE = (200, 30, 30), (30, 30, 200)
P3_COLOUR = (200, 60, 40)


def write_issue(project: Path, *image_lines: str) -> Path:
    """An issue with one article per image; article i's `image:` is on line 6 + 2 i."""
    lines = ["subject: Bilder", "date: 2026-12-16", "sections:", "  - articles:"]
    for i, image in enumerate(image_lines):
        lines += [f"      - title: Artikel {i}", f"        image: {image}"]
    path = project / "issues" / "bilder.yaml"
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path


def rendered(project: Path, issue: Path) -> Rendered:
    return render(load_project(project / "newsletter.yaml"), load_issue(issue))


def problems(project: Path, issue: Path) -> list[str]:
    with pytest.raises(UtskickError) as e:
        rendered(project, issue)
    return [str(p) for p in e.value.problems]


def phone_photo(path: Path) -> None:
    """12 megapixels as a phone stores them: sideways (orientation 6), with GPS, XMP, a comment."""
    photo = Image.new("RGB", (4000, 3000), RED)
    photo.paste(BLUE, (0, 1500, 4000, 3000))  # the stored top is red: upright, red is on the right
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    exif[ExifTags.Base.Make] = "Telefon"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps.update({ExifTags.GPS.GPSLatitudeRef: "N", ExifTags.GPS.GPSLatitude: (59.0, 19.0, 30.5),
                ExifTags.GPS.GPSLongitudeRef: "E", ExifTags.GPS.GPSLongitude: (18.0, 4.0, 12.0)})
    photo.save(path, "JPEG", quality=90, exif=exif, comment=b"Hemma hos redaktoren",
               xmp=b'<x:xmpmeta xmlns:x="adobe:ns:meta/">Hemma hos redaktoren</x:xmpmeta>')


def _s15(v: float) -> bytes:
    return struct.pack(">i", round(v * 65536))


def _xyz(x: float, y: float, z: float) -> bytes:
    return b"XYZ " + bytes(4) + _s15(x) + _s15(y) + _s15(z)


def display_p3_profile() -> bytes:
    """A matrix/TRC ICC v2 profile with Display P3's primaries (D50-adapted), as iPhones embed."""
    text = b"Display P3 (test)\0"
    desc = b"desc" + bytes(4) + struct.pack(">I", len(text)) + text + bytes(78)
    curve = b"curv" + bytes(4) + struct.pack(">IH", 1, round(2.2 * 256)) + bytes(2)
    tags = [(b"desc", desc), (b"wtpt", _xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", _xyz(0.5151, 0.2412, -0.0011)), (b"gXYZ", _xyz(0.2920, 0.6922, 0.0419)),
            (b"bXYZ", _xyz(0.1571, 0.0666, 0.7841)), (b"rTRC", curve), (b"gTRC", curve), (b"bTRC", curve),
            (b"cprt", b"text" + bytes(4) + b"none\0\0\0\0")]
    offset = 128 + 4 + 12 * len(tags)
    table, data = b"", b""
    for sig, body in tags:
        table += sig + struct.pack(">II", offset + len(data), len(body))
        data += body + bytes(-len(body) % 4)
    header = (struct.pack(">I", offset + len(data)) + bytes(4) + bytes([2, 0x10, 0, 0]) + b"mntrRGB XYZ " + bytes(12)
              + b"acsp" + bytes(28) + _s15(0.9642) + _s15(1.0) + _s15(0.8249) + bytes(48))
    return header + struct.pack(">I", len(tags)) + table + data


def pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def distance(a: tuple[int, ...], b: tuple[int, ...]) -> int:
    return max(abs(x - y) for x, y in zip(a, b))


def clean(picture: Image.Image) -> None:
    """No metadata of any kind left in an image the pipeline wrote."""
    assert not picture.getexif()
    for key in ("exif", "xmp", "icc_profile", "comment", "XML:com.adobe.xmp", "photoshop", "adobe"):
        assert key not in picture.info, key
    assert not getattr(picture, "text", {})


def only_message(build: Path) -> EmailMessage:
    (eml,) = build.glob("*.eml")
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def test_phone_photo_is_upright_small_and_without_its_location(project: Path, run: Run) -> None:
    phone_photo(project / "issues" / "bilder" / "IMG_0001.jpg")
    issue = write_issue(project, "{src: bilder/IMG_0001.jpg, alt: Sjön i motljus}")
    result = run("build", str(issue), "-o", "out")
    assert result.exit_code == 0, result.output
    msg = only_message(project / "out")
    (part,) = [p for p in msg.walk() if p.get_content_maintype() == "image"]
    assert part.get_content_type() == "image/jpeg"
    data = part.get_content()
    assert len(data) < 100 * 1024 and b"Hemma" not in data and b"Telefon" not in data
    sent = Image.open(io.BytesIO(data))
    assert sent.format == "JPEG" and sent.size == (1104, 1472)  # portrait now, 2 × 552 wide
    assert sent.info.get("progressive") or sent.info.get("progression")
    clean(sent)
    assert distance(pixel(sent, (1000, 736)), RED) < 12  # the right side is red
    assert distance(pixel(sent, (100, 736)), BLUE) < 12
    html = msg.get_body(("html",))
    assert html is not None
    img = lxml.html.fromstring(html.get_content()).find(".//img")
    assert img is not None
    assert img.get("src") == f"cid:{part['Content-ID'].strip('<>')}"
    assert (img.get("width"), img.get("height")) == ("552", "736")
    style = img.get("style", "").replace(" ", "")
    assert "width:100%" in style and "max-width:552px" in style and "height:auto" in style


def test_cmyk_and_display_p3_become_srgb(project: Path) -> None:
    bilder = project / "issues" / "bilder"
    Image.new("CMYK", (800, 600), (0, 200, 200, 0)).save(bilder / "tryck.jpg", "JPEG", quality=95)
    Image.new("RGB", (800, 600), P3_COLOUR).save(bilder / "iphone.jpg", "JPEG", quality=95, icc_profile=display_p3_profile())
    issue = write_issue(project, "{src: bilder/tryck.jpg, alt: Trycksak}", "{src: bilder/iphone.jpg, alt: Foto}")
    cmyk, p3 = rendered(project, issue).pictures
    for picture in (cmyk, p3):
        out = Image.open(io.BytesIO(picture.data))
        assert out.mode == "RGB" and out.size == (800, 600)
        clean(out)
    assert distance(pixel(Image.open(io.BytesIO(cmyk.data)), (10, 10)), (255, 55, 55)) < 8
    profile = ImageCms.ImageCmsProfile(io.BytesIO(display_p3_profile()))
    srgb = ImageCms.createProfile("sRGB")
    expected = ImageCms.profileToProfile(Image.new("RGB", (1, 1), P3_COLOUR), profile, srgb, outputMode="RGB")
    assert expected is not None
    got = pixel(Image.open(io.BytesIO(p3.data)), (10, 10))
    assert distance(got, pixel(expected, (0, 0))) < 6
    assert distance(got, P3_COLOUR) > 15  # really converted, not relabelled


def test_png_keeps_transparency_and_animated_gif_keeps_its_frames(project: Path) -> None:
    bilder = project / "issues" / "bilder"
    logo = Image.new("RGBA", (1600, 400), (0, 0, 0, 0))
    logo.paste((0, 120, 60, 255), (800, 0, 1600, 400))
    info = PngInfo()
    info.add_text("Author", "Redaktören")
    logo.save(bilder / "logga.png", pnginfo=info)
    frames = [Image.new("RGB", (1600, 800), colour) for colour in (RED, BLUE, (30, 160, 30))]
    frames[0].save(bilder / "rorlig.gif", save_all=True, append_images=frames[1:], duration=[200, 300, 400], loop=0,
                   comment=b"Redaktoren var har")
    issue = write_issue(project, "{src: bilder/logga.png, alt: Logga}", "{src: bilder/rorlig.gif, alt: Animation}")
    png, gif = rendered(project, issue).pictures
    out = Image.open(io.BytesIO(png.data))
    assert out.format == "PNG" and out.mode == "RGBA" and out.size == (1104, 276)
    assert pixel(out, (10, 10))[3] == 0 and pixel(out, (1000, 10))[3] == 255
    clean(out)
    anim = Image.open(io.BytesIO(gif.data))
    assert anim.format == "GIF" and anim.size == (1104, 552) and getattr(anim, "n_frames", 1) == 3
    durations = []
    for n in range(3):
        anim.seek(n)
        durations.append(anim.info["duration"])
    assert durations == [200, 300, 400]
    assert b"Redaktoren" not in gif.data
    clean(anim)


def test_multi_picture_jpeg_and_16_bit_grey_png(project: Path) -> None:
    bilder = project / "issues" / "bilder"
    views = [Image.new("RGB", (800, 600), colour) for colour in (RED, BLUE)]
    views[0].save(bilder / "portratt.jpg", "MPO", save_all=True, append_images=views[1:])  # as phones write them
    Image.new("I;16", (800, 600), 40000).save(bilder / "skanning.png")
    issue = write_issue(project, "{src: bilder/portratt.jpg, alt: Porträtt}", "{src: bilder/skanning.png, alt: Skanning}")
    mpo, grey = (Image.open(io.BytesIO(p.data)) for p in rendered(project, issue).pictures)
    assert mpo.format == "JPEG" and getattr(mpo, "n_frames", 1) == 1 and distance(pixel(mpo, (5, 5)), RED) < 8
    tone = grey.getpixel((5, 5))
    assert grey.mode == "L" and isinstance(tone, int) and abs(tone - 40000 // 257) <= 1  # scaled, not clipped


def many_frames(count: int, width: int, height: int) -> bytes:
    """A GIF of `count` one-pixel frames on a large screen: tiny on disk, huge once decoded."""
    screen = b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + bytes(6)
    frame = (b"\x21\xf9\x04\x00\x0a\x00\x00\x00"  # 100 ms
             + b"\x2c" + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00")
    return screen + frame * count + b"\x3b"


def test_animation_too_large_is_refused_with_a_hint(project: Path) -> None:
    bilder = project / "issues" / "bilder"
    noise = [Image.effect_noise((700, 500), 100).convert("L") for _ in range(6)]
    noise[0].save(bilder / "brus.gif", save_all=True, append_images=noise[1:])
    (bilder / "lang.gif").write_bytes(many_frames(100, 1100, 1000))
    issue = write_issue(project, "{src: bilder/brus.gif, alt: Brus}", "{src: bilder/lang.gif, alt: Lång}")
    brus, lang = problems(project, issue)
    assert re.match(r"issues/bilder\.yaml:6:22: error: .*image\.src: brus\.gif is \d+ KB .*(at most 1024 KB).*still JPEG or PNG", brus)
    assert re.match(r"issues/bilder\.yaml:8:22: error: .*lang\.gif is an animation of 100 frames", lang)


def test_files_that_are_not_real_images_or_lead_outside_are_refused_at_their_line(project: Path, tmp_path: Path, run: Run) -> None:
    bilder = project / "issues" / "bilder"
    (bilder / "anteckningar.png").write_text("Lösenord: hemligt\n", "utf-8")
    outside = tmp_path / "utanfor"
    outside.mkdir()
    Image.new("RGB", (600, 400), RED).save(outside / "hemlig.jpg")
    (bilder / "foto.jpg").symlink_to(outside / "hemlig.jpg")
    Image.new("RGB", (600, 400), RED).save(tmp_path / "grannens.png")
    (bilder / "ikon.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>', "utf-8")
    (bilder / "ritning.png").write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>', "utf-8")
    Image.new("RGB", (600, 400), RED).save(bilder / "bild.webp", "WEBP")
    Image.new("RGB", (600, 400), RED).save(bilder / "egentligen-png.jpg", "PNG")
    (bilder / "IMG_0002.heic").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic")
    (bilder / "kamera.jpg").write_bytes(b"\0\0\0\x18ftypheic\0\0\0\0mif1heic")
    phone_photo(bilder / "hel.jpg")
    (bilder / "avbruten.jpg").write_bytes((bilder / "hel.jpg").read_bytes()[:60_000])
    issue = write_issue(project, *(f"{{src: {src}, alt: X}}" for src in [
        "bilder/anteckningar.png", "bilder/foto.jpg", "../../grannens.png", "bilder/ikon.svg",
        "bilder/ritning.png", "bilder/bild.webp", "bilder/egentligen-png.jpg", "bilder/IMG_0002.heic",
        "bilder/kamera.jpg", "bilder/avbruten.jpg"]))
    found = problems(project, issue)
    expected = [
        "anteckningar.png is not a real PNG image",
        "foto.jpg is outside the project folder",
        "grannens.png is outside the project folder",
        "ikon.svg: SVG is shown by neither Outlook nor Gmail: export it as PNG",
        "ritning.png is really in the SVG format: SVG is shown by neither",
        "bild.webp: Outlook does not show WebP",
        "egentligen-png.jpg is a PNG image with a JPEG name: rename it to egentligen-png.png",
        "IMG_0002.heic: mail clients do not show HEIC: export the photo as JPEG",
        "kamera.jpg is really in the HEIC format: mail clients do not show HEIC",
        "avbruten.jpg cannot be read as a JPEG image",
    ]
    assert len(found) == len(expected), found
    for n, (problem, message) in enumerate(zip(found, expected)):
        assert problem.startswith(f"issues/bilder.yaml:{6 + 2 * n}:22: error: sections[0].articles[{n}].image.src: {message}"), problem
    assert "hemlig.jpg" not in "".join(found)  # where a link points is not the editor's business here
    checked = run("check", str(issue))
    assert checked.exit_code == 1 and "Traceback" not in checked.output
    assert not (project / "build").exists()


def test_absolute_src_is_refused_and_a_path_up_inside_the_project_is_fine(project: Path) -> None:
    Image.new("RGB", (600, 400), RED).save(project / "gemensam.png")
    absolute = project / "issues" / "bilder" / "sjoutsikt.png"
    issue = write_issue(project, f"{{src: {absolute}, alt: X}}")
    (problem,) = problems(project, issue)
    assert problem.startswith("issues/bilder.yaml:6:22: error: sections[0].articles[0].image.src: ")
    assert "is an absolute path" in problem
    issue = write_issue(project, "{src: ../gemensam.png, alt: Gemensam}")
    (picture,) = rendered(project, issue).pictures
    assert Image.open(io.BytesIO(picture.data)).size == (600, 400)  # fewer pixels than 2 × 552: never enlarged


def test_warnings_for_blurry_and_heavy_images(project: Path) -> None:
    bilder = project / "issues" / "bilder"
    Image.new("RGB", (200, 100), RED).save(bilder / "liten.jpg")
    Image.effect_noise((1104, 900), 120).convert("RGB").save(bilder / "brus.png")
    issue = write_issue(project, "{src: bilder/liten.jpg, alt: Liten}", "{src: bilder/brus.png, alt: Brus}")
    warnings = [str(p) for p in rendered(project, issue).problems]
    assert any(w.startswith("issues/bilder.yaml:6:22: warning: ") and "liten.jpg is 200 px wide but shown at 552 px" in w
               for w in warnings), warnings
    assert any(re.match(r"issues/bilder\.yaml: warning: embedded images add \d+ KB to every message \(over 300 KB\)", w)
               for w in warnings), warnings


def test_results_are_cached_by_content(project: Path) -> None:
    source = project / "issues" / "bilder" / "sjoutsikt.png"
    issue = write_issue(project, "{src: bilder/sjoutsikt.png, alt: Sjö}")
    (first,) = rendered(project, issue).pictures
    cached = project / ".utskick" / "cache" / f"{first.key}.png"
    assert cached.read_bytes() == first.data
    marker = io.BytesIO()
    Image.new("RGB", (560, 300), BLUE).save(marker, "PNG")
    cached.write_bytes(marker.getvalue())  # a cache hit must serve this without decoding the source
    (second,) = rendered(project, issue).pictures
    assert second.data == marker.getvalue()
    Image.new("RGB", (560, 300), RED).save(source)
    (third,) = rendered(project, issue).pictures
    assert third.key != first.key and Image.open(io.BytesIO(third.data)).getpixel((0, 0)) == RED


def test_hosted_images_are_linked_from_the_web_version_and_written_for_it(project: Path, run: Run) -> None:
    settings = project / "newsletter.yaml"
    text = settings.read_text("utf-8")
    settings.write_text(text.replace("sending:", "images: hosted\nsending:"), "utf-8")
    assert run("build", "2026-12", "-o", "out").exit_code == 0
    msg = only_message(project / "out")
    assert not [p for p in msg.walk() if p.get_content_maintype() == "image"]
    html = msg.get_body(("html",))
    assert html is not None
    srcs = [img.get("src") for img in lxml.html.fromstring(html.get_content()).iter("img")]
    local = [s for s in srcs if s.startswith("https://www.sjolandet.example/nyhetsbrev/images/sjoutsikt-")]
    assert len(local) == 1 and local[0].endswith(".png")
    published = project / "out" / "images" / local[0].rsplit("/", 1)[1]
    assert Image.open(published).format == "PNG"
    (picture,) = [p for p in rendered(project, project / "issues" / "2026-12.yaml").pictures]
    assert images.write_files([picture], project / "site") == [project / "site" / "images" / picture.name]

    settings.write_text(text.replace("web_version:", "#").replace("sending:", "images: hosted\nsending:"), "utf-8")
    checked = run("check", "2026-12")
    assert checked.exit_code == 1
    line = next(n for n, s in enumerate(settings.read_text("utf-8").splitlines(), 1) if s.startswith("images:"))
    assert f"newsletter.yaml:{line}:9: error: images: hosted images are linked from the web version's site: set web_version too" in checked.output


@pytest.mark.parametrize(("language", "credit", "shown"), [
    ("sv", "Bengt Säll", "Foto: Bengt Säll"),
    ("sv", "Foto: Bengt Säll", "Foto: Bengt Säll"),
    ("en", "Photo: Bengt Säll", "Photo: Bengt Säll"),
    ("en", "Bengt Säll", "Photo: Bengt Säll"),
])
def test_credit_prefix_is_not_doubled(project: Path, language: str, credit: str, shown: str) -> None:
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace("language: sv", f"language: {language}"), "utf-8")
    issue = write_issue(project, f'{{src: bilder/sjoutsikt.png, alt: Sjö, credit: "{credit}"}}')
    html = personalise(rendered(project, issue), SAMPLE, sample()).html
    caption = lxml.html.fromstring(html).find_class("caption")[0].text_content()
    assert caption == shown


def test_preview_serves_only_pipeline_images_with_a_csp(project: Path) -> None:
    phone_photo(project / "issues" / "bilder" / "sjoutsikt.jpg")
    issue = project / "issues" / "2026-12.yaml"
    issue.write_text(issue.read_text("utf-8").replace("bilder/sjoutsikt.png", "bilder/sjoutsikt.jpg"), "utf-8")
    with previewing(project) as (preview, server):
        assert preview.view.email is not None, preview.view.problems
        (cid,) = preview.view.email.images
        with urllib.request.urlopen(f"{server.url}cid/{cid}", timeout=10) as response:
            assert response.headers["Content-Type"] == "image/jpeg"
            assert "default-src 'none'" in response.headers["Content-Security-Policy"]
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            clean(Image.open(io.BytesIO(response.read())))
        # Hosted images are not published yet while an editor writes: the preview serves them too.
        edit(project / "newsletter.yaml", "sending:", "images: hosted\nsending:")
        view = until(preview, lambda v: v.email is not None and v.email.version > 1)
        assert view.email is not None and f'src="/cid/{cid}"' in view.email.html and "/images/" not in view.email.html


def test_preview_shows_a_photo_dropped_in_after_the_issue_names_it(project: Path) -> None:
    issue = project / "issues" / "2026-12.yaml"
    with previewing(project) as (preview, _):
        edit(issue, "bilder/sjoutsikt.png", "bilder/IMG_0003.jpg")
        until(preview, lambda v: v.failed and "image file not found" in str(v.problems[0]))
        phone_photo(project / "issues" / "bilder" / "IMG_0003.jpg")
        view = until(preview, lambda v: not v.failed)
        assert view.email is not None and [p.format for p in view.email.images.values()] == ["JPEG"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from launch()


def test_images_are_fluid_without_any_style_block(project: Path, browser: Any) -> None:
    """Clients that drop <style> keep only the inline style: each image fills a narrow column at its
    own aspect ratio and never grows past its width; Outlook reads the width attribute."""
    phone_photo(project / "issues" / "bilder" / "IMG_0001.jpg")
    issue = write_issue(project, "{src: bilder/IMG_0001.jpg, alt: Sjön}", "{src: bilder/sjoutsikt.png, alt: Sjö, width: 120}")
    r = rendered(project, issue)
    html = personalise(r, SAMPLE, sample()).html
    for picture in r.pictures:
        html = html.replace(f"cid:{picture.cid}", f"data:{picture.mime};base64,{base64.b64encode(picture.data).decode()}")
    tags = [lxml.html.tostring(img, encoding="unicode") for img in lxml.html.fromstring(html).iter("img")]
    page_html = "".join(f'<div style="width:{w}px">{tag}</div>' for w in (300, 1000) for tag in tags)
    page = browser.new_page()
    page.set_content(f"<!DOCTYPE html><html><body>{page_html}</body></html>")
    page.wait_for_function("[...document.images].every(i => i.complete && i.naturalWidth > 0)", timeout=10_000)
    sizes = page.evaluate("[...document.images].map(i => [i.getBoundingClientRect().width, i.getBoundingClientRect().height])")
    page.close()
    (photo_narrow, small_narrow, photo_wide, small_wide) = sizes
    assert photo_narrow[0] == 300 and abs(photo_narrow[1] - 300 * 1472 / 1104) < 1
    assert photo_wide[0] == 552 and abs(photo_wide[1] - 736) < 1
    assert small_narrow[0] == small_wide[0] == 120


def test_the_logo_goes_through_the_pipeline_with_its_real_height(project: Path) -> None:
    Image.new("RGB", (1000, 250), RED).save(project / "issues" / "bilder" / "logga.png")
    settings = project / "newsletter.yaml"
    settings.write_text(settings.read_text("utf-8").replace(
        "unsubscribe:", "logo: {src: issues/bilder/logga.png, alt: Sjölandet}\nunsubscribe:", 1), "utf-8")
    html = personalise(rendered(project, project / "issues" / "2026-12.yaml"), SAMPLE, sample()).html
    (logo,) = [img for img in lxml.html.fromstring(html).iter("img") if img.get("alt") == "Sjölandet"]
    assert logo.get("src", "").startswith("cid:")
    assert (logo.get("width"), logo.get("height")) == (str(images.LOGO_WIDTH), str(images.LOGO_WIDTH // 4))
