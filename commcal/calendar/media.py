"""`media:` of a calendar item: the images and videos it posts, with alt text per locale.

    media:                              # every channel of the item
      - file: media/cover.jpg           # under the project's media/ folder
        alt: "Three volunteers at the market stall"
        focus: [0, 0.5]                 # optional: x, y from -1 to 1 (Mastodon's focal point)
      - url: https://example.org/map.png
        alt: {el: "Χάρτης της αγοράς", en: "Map of the market"}

    media:                              # or per channel: `default` for those not named
      default: [{file: media/cover.jpg, alt: "..."}]
      bluesky: []                       # no media on Bluesky

Files are read here only to see that they exist inside the project; what each network accepts
(count, bytes, pixels, format, alt length) is checked with the rendered message
(`commcal.mediacheck`).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from commcal.calendar.fields import Reader, did_you_mean
from commcal.calendar.model import MediaEntry
from commcal.calendar.yamlnodes import Node

MEDIA_FOLDER = "media"
ENTRY_KEYS = ("file", "url", "alt", "focus")
DEFAULT = "default"  # the key of `media:` for the channels not named
_LOCALE = re.compile(r"^[A-Za-z]{2,3}([_-][A-Za-z0-9]{2,8})*$")
_EXAMPLE = "e.g. media: [{file: media/cover.jpg, alt: 'what the picture shows'}]"


def read_media(
    reader: Reader,
    node: Node,
    where: str,
    *,
    root: Path,
    channels: Collection[str],
    locale: str,
) -> dict[str, tuple[MediaEntry, ...]]:
    """`media:` -> files by channel name ("" for every channel not named)."""
    if node.kind == "seq":
        return {"": _entries(reader, node, where, root, locale)}
    if node.kind != "map":
        reader.problem(
            node.pos,
            f"{where} media must be a list of files, or a mapping of channel names to lists, "
            f"not {node.describe()}",
            _EXAMPLE,
        )
        return {}
    known = [DEFAULT, *channels]
    out: dict[str, tuple[MediaEntry, ...]] = {}
    for key, value in node.entries:
        if key.text not in known:
            reader.problem(
                key.pos,
                f"{where} media: {key.text!r} is not one of the item's channels",
                did_you_mean(key.text, known) or f"write {DEFAULT}: for every channel",
            )
            continue
        if value.kind != "seq":
            reader.problem(
                value.pos,
                f"{where} media.{key.text} must be a list of files, not {value.describe()}",
                "write [] for none",
            )
            continue
        name = "" if key.text == DEFAULT else key.text
        out[name] = _entries(reader, value, f"{where} media.{key.text}", root, locale)
    return out


def _entries(
    reader: Reader, node: Node, where: str, root: Path, locale: str
) -> tuple[MediaEntry, ...]:
    entries = []
    for entry in node.items:
        read = _entry(reader, entry, where, root, locale)
        if read is not None:
            entries.append(read)
    return tuple(entries)


def _entry(reader: Reader, node: Node, where: str, root: Path, locale: str) -> MediaEntry | None:
    if not reader.mapping(node, f"{where} file", ENTRY_KEYS, _EXAMPLE):
        return None
    file_node, url_node = node.get("file"), node.get("url")
    if (file_node is None) == (url_node is None):
        reader.problem(
            node.pos,
            f"{where}: each file needs exactly one of file: or url:",
            "file: media/cover.jpg (in the project) or url: https://... (fetched at upload)",
        )
        return None
    file = url = ""
    if file_node is not None:
        file = _file(reader, file_node, where, root) or ""
    elif url_node is not None:
        url = reader.text(url_node, f"{where} url") or ""
        if url and not url.startswith("https://"):
            reader.problem(url_node.pos, f"{where}: url {url!r} must start with https://")
            url = ""
    alt = _alt(reader, node, where, locale)
    focus = _focus(reader, node.get("focus"), where) if node.get("focus") is not None else None
    if not (file or url) or alt is None:
        return None
    return MediaEntry(node.pos, file=file, url=url, alt=alt, focus=focus)


def _file(reader: Reader, node: Node, where: str, root: Path) -> str | None:
    """A path under the project's media/ folder that is there (symlinks followed: one that
    leads out of the project is refused, as is `..`)."""
    text = reader.text(node, f"{where} file")
    if text is None:
        return None
    written = Path(text)
    folder = (root / MEDIA_FOLDER).resolve()
    if written.is_absolute():
        reader.problem(
            node.pos,
            f"{where}: file {text!r} is an absolute path",
            f"write a path inside the project, e.g. {MEDIA_FOLDER}/{written.name}",
        )
        return None
    try:
        resolved = (root / written).resolve()
    except (RuntimeError, OSError):  # a symlink loop (RuntimeError before Python 3.13)
        reader.problem(
            node.pos,
            f"{where}: file {text!r} is a symlink that leads back to itself",
            f"replace it with the file, or a symlink to a file in {MEDIA_FOLDER}/",
        )
        return None
    if not resolved.is_file():
        composed = _other_unicode_form(resolved)
        if composed is not None:
            resolved, written = composed, composed.relative_to(root.resolve())
    if not resolved.is_relative_to(folder):
        outside = not resolved.is_relative_to(root.resolve())
        reader.problem(
            node.pos,
            f"{where}: file {text!r} "
            + ("leads out of the project" if outside else f"is not under {MEDIA_FOLDER}/"),
            f"copy the file into {MEDIA_FOLDER}/ and write {MEDIA_FOLDER}/{written.name}",
        )
        return None
    if not resolved.is_file():
        there = (
            [p.relative_to(root).as_posix() for p in sorted(folder.rglob("*")) if p.is_file()]
            if folder.is_dir()
            else []
        )
        reader.problem(
            node.pos,
            f"{where}: file {text!r} does not exist",
            did_you_mean(text, there) if there else f"put the file in {MEDIA_FOLDER}/",
        )
        return None
    return written.as_posix()


def _other_unicode_form(path: Path) -> Path | None:
    """The file in `path`'s folder whose name is `path`'s written in another Unicode form: a
    name typed composed (NFC, "é" one character) for a file copied from a Mac, which keeps its
    names decomposed (NFD, "e" and an accent). They look the same; the one there is meant."""
    import unicodedata

    def norm(text: str) -> str:
        return unicodedata.normalize("NFC", text)

    try:
        return next(
            (p for p in path.parent.iterdir() if norm(p.name) == norm(path.name) and p.is_file()),
            None,
        )
    except OSError:
        return None


def _alt(reader: Reader, node: Node, where: str, locale: str) -> dict[str, str] | None:
    """alt: text (every locale), or a mapping locale -> text; required either way."""
    alt_node = node.get("alt")
    if alt_node is None:
        reader.problem(
            node.pos,
            f"{where}: a file needs alt: text (what it shows, for people who cannot see it)",
            "add alt: 'Three volunteers at the market stall', or alt: {el: ..., en: ...}",
        )
        return None
    if alt_node.kind != "map":
        text = reader.text(alt_node, f"{where} alt")
        return None if text is None else {"": text}
    texts: dict[str, str] = {}
    for key, value in alt_node.entries:
        if not _LOCALE.match(key.text):
            reader.problem(
                key.pos,
                f"{where} alt: {key.text!r} is not a locale",
                "use language codes such as en, el (Greek) or sw (Swahili)",
            )
            continue
        text = reader.text(value, f"{where} alt.{key.text}")
        if text is not None:
            texts[key.text] = text
    if texts and alt_text(texts, locale) is None:
        reader.problem(
            alt_node.pos,
            f"{where}: alt has no text for the item's locale {locale!r} "
            f"(it has {', '.join(sorted(texts))})",
            f"add {locale}: ... under alt:",
        )
        return None
    return texts or None


def alt_text(alt: dict[str, str] | object, locale: str) -> str | None:
    """The alt text for `locale`: the text for every locale, the locale's own (el_GR), or its
    language's (el); None when there is none."""
    if not isinstance(alt, dict):
        return None
    for key in ("", locale, locale.replace("-", "_"), re.split(r"[_-]", locale)[0]):
        if key in alt:
            return str(alt[key])
    return None


def _focus(reader: Reader, node: Node | None, where: str) -> tuple[float, float] | None:
    if node is None:
        return None
    hint = "focus: [x, y], each from -1 to 1 ([0, 0] is the centre, [0, 1] the top edge)"
    values = [v.text for v in node.items] if node.kind == "seq" else []
    try:
        x, y = (float(v) for v in values)
    except ValueError:
        reader.problem(node.pos, f"{where}: focus must be two numbers, not {node.describe()}", hint)
        return None
    if not (-1 <= x <= 1 and -1 <= y <= 1):
        reader.problem(node.pos, f"{where}: focus [{x:g}, {y:g}] is outside -1..1", hint)
        return None
    return (x, y)
