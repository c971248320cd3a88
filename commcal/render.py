"""Templates -> messages: a sandboxed, strict Jinja environment over `templates/`.

Lookup for a template base `posts/tip`, channel type `mastodon` and locale `el`, first found wins:
  text: posts/tip.el.mastodon.j2, posts/tip.mastodon.j2, posts/tip.el.j2, posts/tip.j2,
        posts/tip.el.txt.j2, posts/tip.txt.j2
  html: posts/tip.el.html.j2, posts/tip.html.j2 (autoescaped)
A template may define `{% block subject %}` (the mail subject) and `{% block text %}`; without a
text block the whole template, minus the subject block, is the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date, datetime, timedelta, tzinfo
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from commcal.errors import Pos, Problem

if TYPE_CHECKING:
    import re

    import jinja2

SUFFIX = ".j2"


class Rendered(NamedTuple):
    """One message's rendered parts. A named tuple: one is made per delivery, and a tuple is
    built about three times faster than a frozen dataclass (bench/plan_year.py)."""

    text: str
    subject: str | None
    html: str | None
    sources: tuple[str, ...]  # template files used, relative to templates/


class Setting(NamedTuple):
    """How the filters format one message: its locale, its zone and the default UTM tags.
    The context carries it under `SETTING` (one key, not one per value); a named tuple, as one
    is made per delivery."""

    locale: str
    tz: tzinfo | None = None
    utm_source: str = ""  # "": the channel's name
    utm_medium: str = "social"


# The context key of the message's `Setting`; a leading underscore keeps it out of templates'
# way (no calendar var starts with one).
SETTING = "_commcal"


def language_of(locale: str) -> str:
    """A locale's language: `el` for el, el_GR and el-CY (template variants fall back to it)."""
    return locale.split("_")[0].split("-")[0]


def _named(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


class TemplateOutside(Exception):
    """A template file whose real path (after every symlink) is outside `templates/`."""

    def __init__(self, name: str, real: Path) -> None:
        super().__init__(f"{name} is a link to {real}, outside templates/")
        self.name = name
        self.real = real


def read_template(folder: Path, name: str) -> str:
    """The text of `templates/<name>`, refusing anything that is not a file inside `folder`.

    A symlink (`templates/leak.j2 -> /etc/passwd`, or a linked folder reached through
    `{% include %}`) must not let a calendar edit publish a file from elsewhere on the host, so
    the file's real path must lie inside the real templates folder; it is checked before the
    file is opened (a link to /dev/zero or a FIFO would otherwise be read). A leading UTF-8 BOM,
    which some editors write, is dropped: it is not text (X counts U+FEFF as invalid).
    Raises TemplateOutside, FileNotFoundError, or UnicodeDecodeError.
    """
    path = folder.joinpath(*_name_parts(name))
    root = folder.resolve()
    real = path.resolve()
    if not real.is_relative_to(root):
        raise TemplateOutside(name, real)
    if not real.is_file():
        raise FileNotFoundError(name)
    return real.read_text(encoding="utf-8").removeprefix("\ufeff")


def _name_parts(name: str) -> list[str]:
    """`posts/tip.j2` -> ["posts", "tip.j2"]; names with `..` are refused, as jinja does."""
    from jinja2 import TemplateNotFound
    from jinja2.loaders import split_template_path

    try:
        return split_template_path(name)
    except TemplateNotFound:
        raise FileNotFoundError(name) from None


class RenderError(Exception):
    """A template failed; `problem` names the template file and line."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(str(problem))
        self.problem = problem


def template_bases(folder: Path) -> set[str]:
    """Names usable as `template:` in calendars: `posts/tip` for posts/tip.mastodon.j2 and so on."""
    if not folder.is_dir():
        return set()
    bases = set()
    for path in folder.rglob(f"*{SUFFIX}"):
        relative = path.relative_to(folder).as_posix()
        head, _, name = relative.rpartition("/")
        base = name.split(".", 1)[0]
        bases.add(f"{head}/{base}" if head else base)
    return bases


class Renderer:
    """Compiles each template once and renders messages for deliveries."""

    def __init__(self, folder: Path, *, display_root: Path | None = None) -> None:
        self.folder = folder
        self.display_root = display_root or folder.parent
        self._env: jinja2.Environment | None = None
        self._lookup: dict[tuple[str, str, str, str], str | None] = {}
        # Per-message work done once: compiled templates by file name (auto_reload is off, so
        # jinja's own cache would give the same object after a slower lookup), and the
        # environment's globals flattened into one dict (each jinja `new_context` otherwise
        # copies a ChainMap of them, key by key, for every part of every message).
        self._templates: dict[str, jinja2.Template] = {}
        self._globals: dict[str, Any] | None = None
        self._files = (
            {p.relative_to(folder).as_posix() for p in folder.rglob(f"*{SUFFIX}")}
            if (folder.is_dir())
            else set()
        )

    @property
    def env(self) -> jinja2.Environment:
        if self._env is None:
            self._env = self._make_env()
        return self._env

    def _make_env(self) -> jinja2.Environment:
        import jinja2
        from jinja2.sandbox import SandboxedEnvironment

        env = SandboxedEnvironment(
            loader=_confined_loader(self.folder),
            undefined=jinja2.StrictUndefined,
            autoescape=lambda name: bool(name) and ".html" in name,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=False,
            auto_reload=False,
        )
        env.filters.update(template_filters())
        return env

    def source(self, name: str) -> str:
        """A template file's text (name as `find` gives it); empty if it cannot be read or lies
        outside templates/."""
        try:
            return read_template(self.folder, name)
        except (OSError, UnicodeDecodeError, TemplateOutside):
            return ""

    def find(self, base: str, channel_type: str, locale: str, part: str) -> str | None:
        key = (base, channel_type, locale, part)
        if key not in self._lookup:
            lang = language_of(locale)
            if part == "html":
                names = [f"{base}.{locale}.html", f"{base}.{lang}.html", f"{base}.html"]
            else:
                names = [
                    f"{base}.{locale}.{channel_type}",
                    f"{base}.{lang}.{channel_type}",
                    f"{base}.{channel_type}",
                    f"{base}.{locale}",
                    f"{base}.{lang}",
                    base,
                    f"{base}.{locale}.txt",
                    f"{base}.{lang}.txt",
                    f"{base}.txt",
                ]
            self._lookup[key] = next((n + SUFFIX for n in names if n + SUFFIX in self._files), None)
        return self._lookup[key]

    def render(
        self,
        base: str,
        channel_type: str,
        locale: str,
        context: Mapping[str, Any],
        *,
        what: str | Callable[[], str],
    ) -> Rendered:
        """Render the parts of one message. `what` names the item for error messages (or is a
        function that does: it is only needed when something goes wrong)."""
        text_name = self.find(base, channel_type, locale, "text")
        html_name = self.find(base, channel_type, locale, "html")
        if text_name is None and html_name is None:
            raise RenderError(
                Problem(
                    Pos(self._shown(base)),
                    f"no template {base!r} for {_named(what)}",
                    f"create templates/{base}.j2",
                )
            )
        # One parent namespace for both parts, as jinja's `render` would build it (globals, then
        # the variables); templates never write to it (`set` goes to the context's own vars).
        if self._globals is None:
            self._globals = dict(self.env.globals)
        parent = {**self._globals, **context}
        if SETTING not in context:
            parent[SETTING] = Setting(locale)
        subject = text = html = None
        sources = []
        if text_name:
            subject, text = self._parts(text_name, parent, what)
            sources.append(text_name)
        if html_name:
            html_subject, html = self._parts(html_name, parent, what)
            subject = subject or html_subject
            sources.append(html_name)
        if text is None:  # an HTML-only mail still needs a plain part
            text = html_to_text(html or "")
        return Rendered(text.strip(), subject.strip() if subject else None, html, tuple(sources))

    def _parts(
        self, name: str, parent: dict[str, Any], what: str | Callable[[], str]
    ) -> tuple[str | None, str]:
        """Render one template file; `parent` holds the globals and variables (not copied)."""
        import jinja2

        try:
            template = self._templates.get(name)
            if template is None:
                template = self._templates[name] = self.env.get_template(name)
            env = template.environment
            # What `template.new_context(parent, shared=True)` does, with the flattened globals.
            ctx = env.context_class(env, parent, template.name, template.blocks, self._globals)
            subject = None
            if "subject" in template.blocks:
                subject = "".join(template.blocks["subject"](ctx))
                ctx.blocks["subject"] = [lambda _ctx: iter(())]
            if "text" in template.blocks:
                body = "".join(template.blocks["text"](ctx))
            else:
                body = "".join(template.root_render_func(ctx))
            return subject, body
        except TemplateOutside as exc:
            at = self._failed_at(exc.__traceback__, name)
            used = f"included at {at}, " if at.line else ""
            raise RenderError(
                Problem(
                    Pos(self._shown(exc.name)),
                    f"template file is a link to {exc.real}, outside templates/; it is not read",
                    f"{used}used by {_named(what)}; copy the file into templates/ instead",
                )
            ) from None
        except jinja2.TemplateSyntaxError as exc:
            file_name = exc.name or name
            raise RenderError(
                Problem(
                    Pos(self._shown(file_name), exc.lineno),
                    f"template syntax error: {exc.message}",
                    f"used by {_named(what)}",
                )
            ) from None
        except jinja2.TemplateError as exc:
            where_failed = self._failed_at(exc.__traceback__, name)
            raise RenderError(
                Problem(where_failed, f"template error: {exc}", f"while rendering {_named(what)}")
            ) from None
        except (
            TypeError,
            ValueError,
            LookupError,
            AttributeError,
            ArithmeticError,
            RecursionError,
        ) as exc:
            where_failed = self._failed_at(exc.__traceback__, name)
            raise RenderError(
                Problem(
                    where_failed,
                    f"template error: {type(exc).__name__}: {exc}",
                    f"while rendering {_named(what)}",
                )
            ) from None

    def _failed_at(self, tb: TracebackType | None, name: str) -> Pos:
        """The template file and line (not the compiled Python line) where rendering failed."""
        file_name, line = _template_line(tb)
        return Pos(self._shown(file_name or name), line)

    def _shown(self, name: str) -> str:
        path = self.folder / name
        try:
            return path.relative_to(self.display_root).as_posix()
        except ValueError:
            return str(path)


def _confined_loader(folder: Path) -> jinja2.BaseLoader:
    """A jinja loader over `templates/` that reads through `read_template`, so `{% include %}`,
    `{% extends %}` and `{% import %}` are confined to the folder as well."""
    import os

    import jinja2

    class ConfinedLoader(jinja2.BaseLoader):
        def get_source(
            self, environment: jinja2.Environment, template: str
        ) -> tuple[str, str, Callable[[], bool]]:
            try:
                text = read_template(folder, template)
            except FileNotFoundError:
                raise jinja2.TemplateNotFound(template) from None
            except OSError as exc:  # a folder, no permission ...
                reason = exc.strerror or type(exc).__name__
                raise jinja2.TemplateError(f"cannot read template {template}: {reason}") from None
            filename = os.path.join(folder, *_name_parts(template))
            return text, filename, lambda: True  # auto_reload is off: never stale

    return ConfinedLoader()


def _template_line(tb: TracebackType | None) -> tuple[str, int]:
    """The innermost template frame of a traceback: its file name and template line.

    Compiled templates run as Python code; each module's globals hold `__jinja_template__`, whose
    `get_corresponding_lineno` maps the Python line back (what jinja2.debug does for `render`).
    """
    found = ("", 0)
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None and template.name:
            found = (str(template.name), int(template.get_corresponding_lineno(tb.tb_lineno)))
        tb = tb.tb_next
    return found


def html_to_text(html: str) -> str:
    """The plain part of an HTML-only message. A link keeps its address after its words,
    `read more (https://x)`, since a plain-text reader cannot follow the words; a link whose
    words are its address (`https://x`, `x`, or `a@b` for mailto:a@b) is shown once."""
    import re
    from html import unescape

    text = re.sub(r"(?is)<(script|style).*?</\1>", "", html)
    text = re.sub(r"(?is)<a\b([^>]*)>(.*?)</a\s*>", _link_text, text)
    text = re.sub(r"(?i)<br\s*/?>|</p>|</h\d>|</li>", "\n", text)
    text = re.sub(r"<[^>]+>", "", text)
    return re.sub(r"\n{3,}", "\n\n", unescape(text)).strip()


def _link_text(match: re.Match[str]) -> str:
    import re
    from html import escape, unescape

    found = re.search(r"""\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""", match.group(1), re.I)
    words = match.group(2)
    if found is None:
        return words
    href = unescape(next(group for group in found.groups() if group is not None)).strip()
    if not re.match(r"(?i)(https?|mailto):", href):
        return words  # "#top", javascript:, a relative path: nothing a reader could open
    shown = " ".join(unescape(re.sub(r"<[^>]+>", "", words)).split())
    bare = re.sub(r"(?i)^(https?://|mailto:)", "", href).rstrip("/")
    if shown.rstrip("/") in (href.rstrip("/"), bare) or not shown:
        return words if shown else href
    # Escaped again: the text is unescaped as a whole afterwards.
    return f"{words} ({escape(href)})"


# -- filters -------------------------------------------------------------------------------------
# Each takes the locale and zone from the context's `Setting`, so a template writes
# `{{ event.at | date }}` and gets "Πέμπτη 10 Δεκεμβρίου 2026" in a Greek calendar.


def template_filters() -> dict[str, Callable[..., Any]]:
    """commcal's Jinja filters, marked to receive the template context (jinja2 is imported
    here, when an environment is made, not when this module is)."""
    import jinja2

    return {
        "date": jinja2.pass_context(format_date),
        "time": jinja2.pass_context(format_time),
        "datetime": jinja2.pass_context(format_datetime),
        "duration": jinja2.pass_context(format_timedelta),
        "utm": jinja2.pass_context(add_utm),
        "truncate_graphemes": truncate_graphemes,
    }


DEFAULT_SETTING = Setting("en")


def _setting(ctx: Any) -> Setting:
    found = ctx.get(SETTING)
    return found if isinstance(found, Setting) else DEFAULT_SETTING


def _coerce(value: Any) -> datetime | date:
    if isinstance(value, datetime | date):
        return value
    if isinstance(value, str):
        from commcal.timeutil import parse_datetime

        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed
    raise ValueError(f"{value!r} is not a date or date-time")


def _zone(ctx: Any) -> tzinfo | None:
    return _setting(ctx).tz


def format_date(ctx: Any, value: Any, format: str = "full", locale: str | None = None) -> str:
    from babel.dates import format_date as babel_date

    when = _coerce(value)
    if isinstance(when, datetime) and when.tzinfo is not None and _zone(ctx):
        when = when.astimezone(_zone(ctx))
    day = when.date() if isinstance(when, datetime) else when
    return str(babel_date(day, format=format, locale=locale or _setting(ctx).locale))


def format_time(ctx: Any, value: Any, format: str = "short", locale: str | None = None) -> str:
    from babel.dates import format_time as babel_time

    when = _coerce(value)
    if not isinstance(when, datetime):
        raise ValueError(f"{value!r} has no time of day")
    return str(
        babel_time(
            when,
            format=format,
            tzinfo=_zone(ctx) if when.tzinfo else None,
            locale=locale or _setting(ctx).locale,
        )
    )


def format_datetime(ctx: Any, value: Any, format: str = "medium", locale: str | None = None) -> str:
    from babel.dates import format_datetime as babel_datetime

    when = _coerce(value)
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    return str(
        babel_datetime(
            when,
            format=format,
            tzinfo=_zone(ctx) if when.tzinfo else None,
            locale=locale or _setting(ctx).locale,
        )
    )


def format_timedelta(
    ctx: Any, value: Any, locale: str | None = None, add_direction: bool = False
) -> str:
    """A duration in words, exactly: 1h30m is "1 hour and 30 minutes", "1 ώρα και 30 λεπτά".

    babel's format_timedelta rounds to one unit (1h30m -> "2 hours"), wrong for an event's
    length; it is still used with add_direction=True ("in 2 hours"), where rounding is expected.
    """
    from babel.dates import format_timedelta as babel_timedelta
    from babel.lists import format_list

    if not isinstance(value, timedelta):
        raise ValueError(f"{value!r} is not a duration")
    lang = locale or _setting(ctx).locale
    if add_direction:
        return str(babel_timedelta(value, locale=lang, add_direction=True, threshold=1.0))
    seconds = abs(int(value.total_seconds()))
    parts = []
    for unit, size in (
        ("week", 604800),
        ("day", 86400),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(_unit(count, unit, lang))
    if not parts:
        parts.append(_unit(0, "minute", lang))
    return str(format_list(parts, locale=lang))


def _unit(count: int, unit: str, lang: str) -> str:
    """`count unit` in words; some locales (Swahili) have only the short form in CLDR."""
    from babel.units import format_unit

    for length in ("long", "short"):
        text = str(format_unit(count, f"duration-{unit}", length=length, locale=lang))
        if "duration-" not in text:
            return text
    return f"{count} {unit}{'s' if count != 1 else ''}"


def add_utm(
    ctx: Any,
    url: str,
    campaign: str | None = None,
    source: str | None = None,
    medium: str | None = None,
    content: str | None = None,
) -> str:
    """Tag a link for analytics; defaults: source = channel, medium = links.utm_medium,
    campaign = item id. Existing utm_* parameters in the URL are kept."""
    parts = urlsplit(str(url))
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    channel = ctx.get("channel") or {}
    item = ctx.get("item") or {}
    setting = _setting(ctx)
    tags = {
        "utm_source": source or setting.utm_source or channel.get("name", "commcal"),
        "utm_medium": medium or setting.utm_medium,
        "utm_campaign": campaign or item.get("id", ""),
        "utm_content": content or "",
    }
    for key, value in tags.items():
        if value and key not in query:
            query[key] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


def truncate_graphemes(text: str, length: int, end: str = "…") -> str:
    """Cut to `length` user-perceived characters (flags, emoji sequences stay whole)."""
    import regex

    clusters = regex.findall(r"\X", str(text))
    if len(clusters) <= length:
        return str(text)
    keep = max(0, length - len(regex.findall(r"\X", end)))
    return "".join(clusters[:keep]).rstrip() + end
