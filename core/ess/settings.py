"""Resolve typed settings: command line > environment > config file > user defaults > defaults.

Every value remembers where it came from, so ``ess config show`` can say it and every
error can name the file, section and key (or the option / variable) that was wrong.
"""

from __future__ import annotations

import difflib
import math
import os
import re
import stat
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import lifetime
from .errors import UsageError
from .files import InputFileError, check_input_file, read_input_file
from .log import warn
from .models import Settings, SettingSpec, Value
from .names import CLUSTER_NAME, CLUSTER_NAME_HELP
from .paths import config_dir
from .redact import mask_credentials, register_credential_shaped

if TYPE_CHECKING:
    import pluggy

CONFIG_NAMES = ("instance.conf", "instance.toml")

#: Settings the core itself reads, for every backend.
CORE_SETTINGS: tuple[SettingSpec, ...] = (
    SettingSpec(
        "cluster",
        default="default",
        flag="--cluster",
        commands=("*",),
        pattern=CLUSTER_NAME.pattern,
        pattern_help=CLUSTER_NAME_HELP,
        help="Name of the cluster; nodes are tagged ess:cluster=<name> and every command "
        "acts only on nodes with that tag (it also names the cluster's state files).",
    ),
    SettingSpec(
        "wait_timeout",
        type="float",
        default=600.0,
        minimum=1,
        help="Seconds `create` waits for new nodes to reach the running state before it gives up and rolls back.",
    ),
    SettingSpec(
        "max_lifetime",
        flag="--ttl",
        commands=("create", "extend"),
        pattern=lifetime.DURATION,
        pattern_help=lifetime.DURATION_HELP,
        help="Every node ends itself this long after create (8h, 2d; at most 90d), even if ess never runs "
        "again; `extend --ttl` moves the deadline. none: no limit. See docs/lifetime.md.",
    ),
    SettingSpec(
        "idle_timeout",
        flag="--idle",
        pattern=lifetime.DURATION,
        pattern_help=lifetime.DURATION_HELP,
        help="A node with no SSH session, no running `exec` command and a low load for this long "
        "(30m; at least 1m on ec2) ends itself (see idle_action). none: never.",
    ),
    SettingSpec(
        "idle_action",
        default=lifetime.TERMINATE,
        flag="--idle-action",
        choices=lifetime.IDLE_ACTIONS,
        help="What an idle node does: terminate (gone, stops billing) or stop (keeps its disk; `start` resumes it).",
    ),
)

TRUE = {"true", "yes", "on", "1"}
FALSE = {"false", "no", "off", "0"}
MAX_VALUE_LENGTH = 1024
#: A list setting (``hosts``, ``security_groups`` ...) may be longer as a whole: 1,000
#: ``address:port`` entries take about 22 KB. Each item still counts MAX_VALUE_LENGTH.
MAX_LIST_LENGTH = 256 * 1024


def find_config(explicit: str | None, env: Mapping[str, str]) -> tuple[Path | None, str]:
    """The config file to read and the reason it was picked (option, env, or discovery).

    An explicitly named file (``--config`` or ``ESS_CONFIG``) must exist; discovered
    ones are optional, so the local backend works with no config at all. But a discovered
    name that is *there* and is not a readable regular file (a dangling symlink, a folder,
    a FIFO) is an error, never skipped: skipping it would use another config, or none,
    and lose what it says (a lifetime limit that stops the bill, the cluster's key pair).
    """
    if explicit:
        return _must_exist(Path(explicit).expanduser(), "--config"), "--config"
    if env.get("ESS_CONFIG"):
        return _must_exist(Path(env["ESS_CONFIG"]).expanduser(), "ESS_CONFIG"), "ESS_CONFIG"
    for folder in (Path.cwd(), config_dir()):
        for name in CONFIG_NAMES:
            candidate = folder / name
            if os.path.lexists(candidate):
                _check_config_file(candidate, str(candidate), _DISCOVERED_ADVICE)
                return candidate, "discovered"
    return None, "none"


#: What to do about a config file ess found by itself but cannot read.
_DISCOVERED_ADVICE = "ess reads it when no --config is given: fix it, or move it away"
#: ... about the user config, read by every command.
_USER_ADVICE = "it holds defaults for every command, such as max_lifetime: fix it, or move it away"


def _must_exist(path: Path, origin: str) -> Path:
    _check_config_file(
        path,
        f"{origin} {path}",
        f"point {origin} at the config file itself",
        missing=f"check the path, or omit {origin} to use ./instance.conf",
        folder="name the instance.conf or instance.toml inside it",
    )
    return path


def _check_config_file(path: Path, label: str, advice: str, *, missing: str = "", folder: str = "") -> None:
    """UsageError unless ``path`` is a regular file of a size ess reads (by stat: never opened)."""
    if _is_devnull(path):
        return
    try:
        check_input_file(path)
    except InputFileError as exc:
        raise UsageError(_config_file_problem(exc, label, advice, missing=missing, folder=folder)) from None


def _config_file_problem(exc: InputFileError, label: str, advice: str, *, missing: str = "", folder: str = "") -> str:
    """One line about a config file ess cannot read: ``label``, what it is, what to do."""
    path = exc.path
    if exc.kind == "denied":
        return f"{label}: permission denied (make it readable: chmod u+r {path})"
    if exc.kind == "missing":
        return f"{label}: no such file ({missing or advice})"
    if exc.kind == "folder":
        return f"{label}: is a folder, not a config file ({folder or advice})"
    if exc.kind == "too-big":
        return f"{label}: {exc.reason} (a config file is a few KB: {advice})"
    if exc.kind == "other":  # an I/O error: the file is the right one, the disk or the mount is not
        return f"{label}: {exc.reason}"
    return f"{label}: {exc.reason} ({advice})"


def read_config(path: Path, *, advice: str = "point ess at the config file itself") -> dict[str, dict[str, Any]]:
    """Read and parse a config file through the ``ess_load_config`` hook.

    A regular file of at most :data:`ess.files.MAX_INPUT_BYTES`, read no further than
    that: a FIFO or a device named by mistake is one line, never a hang or a MemoryError.
    """
    from .plugins import get_plugin_manager

    if _is_devnull(path):
        return get_plugin_manager().hook.ess_load_config(path=path, text="") or {}
    try:
        data = read_input_file(path)
    except InputFileError as exc:
        raise UsageError(_config_file_problem(exc, str(path), advice)) from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise UsageError(f"{path}: line {line}: not valid UTF-8 text (save the file as UTF-8)") from None
    warn_if_world_writable(path)
    sections = get_plugin_manager().hook.ess_load_config(path=path, text=text)
    if sections is None:
        raise UsageError(
            f"{path}: no installed loader reads this format (use .conf/.ini or .toml, or install a loader plugin)"
        )
    return sections


def _is_devnull(path: Path) -> bool:
    """``--config /dev/null``: the usual way to say "no config", read as an empty file (the
    one device allowed: it reads nothing and never blocks)."""
    try:
        return os.path.samefile(path, os.devnull)
    except (OSError, ValueError):
        return False


def warn_if_world_writable(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & stat.S_IWOTH:
        warn(
            f"ess: warning: {path} is writable by every user; anyone could change what ess launches (chmod o-w {path})"
        )


def find_section(sections: Mapping[str, Mapping[str, Any]], backend: str) -> str | None:
    for name in sections:
        if name.lower() == backend.lower():
            return name
    return None


def specs_for(backend_specs: Iterable[SettingSpec]) -> dict[str, SettingSpec]:
    """Core settings + the backend's + those every plugin adds through ``ess_settings``."""
    from .plugins import get_plugin_manager

    specs: dict[str, SettingSpec] = {spec.key: spec for spec in CORE_SETTINGS}
    for spec in backend_specs:
        specs[spec.key] = spec
    for spec in _plugin_specs(get_plugin_manager()):
        specs.setdefault(spec.key, spec)
    return specs


#: The plugin manager ``ess_settings`` was last asked through, and its answer. Building one
#: command tree asks for the specs of every subcommand (about 30 times): ask the plugins
#: once per manager (a new manager, as tests make with plugins.reset(), asks again).
_asked: tuple[pluggy.PluginManager, tuple[SettingSpec, ...]] | None = None


def _plugin_specs(pm: pluggy.PluginManager) -> tuple[SettingSpec, ...]:
    global _asked
    if _asked is None or _asked[0] is not pm:
        answers = pm.hook.ess_settings()
        _asked = (pm, tuple(spec for provided in answers for spec in (provided or [])))
    return _asked[1]


def resolve(
    backend: str,
    specs: Mapping[str, SettingSpec],
    *,
    config_path: Path | None = None,
    sections: Mapping[str, Mapping[str, Any]] | None = None,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build :class:`Settings` for ``backend`` from every source, validating as it goes.

    ``cli`` maps setting keys to values given on the command line (None = not given).
    """
    env = os.environ if env is None else env
    cli = cli or {}
    if sections is None and config_path is not None:
        sections = read_config(config_path)
    sections = sections or {}
    section = find_section(sections, backend)
    file_values = dict(sections.get(section, {})) if section else {}
    file_label = f"{config_path} [{section}]" if config_path else f"[{section}]"

    check_sections(sections, backend, config_path)
    for key in file_values:
        if key not in specs:
            raise UsageError(f"{file_label} {mask_credentials(key)}: unknown key{did_you_mean(key, specs)}")
    user_label, user_values = user_defaults(specs)

    values: dict[str, Value] = {}
    for key, spec in specs.items():
        if cli.get(key) is not None:
            origin = spec.flag or f"--{key}"
            values[key] = Value(coerce(spec, cli[key], origin), origin)
        elif env.get(spec.env) not in (None, ""):
            values[key] = Value(coerce(spec, env[spec.env], spec.env), spec.env)
        elif key in file_values:
            values[key] = Value(
                coerce(spec, file_values[key], f"{file_label} {key}"), str(config_path) if config_path else "config"
            )
        elif key in user_values:
            values[key] = Value(coerce(spec, user_values[key], f"{user_label} {key}"), user_label)
        else:
            values[key] = Value(spec.default, "default")
    for value in values.values():
        if value.source != "default":
            register_credential_shaped(value.value)
    return Settings(backend=backend, values=values, specs=dict(specs), config_path=config_path, section=section)


# -- the user-level defaults (issue 16) ---------------------------------------------------
#: The user config file, in ``ess.paths.config_dir()``: its ``[defaults]`` table holds values
#: under every project config (above the built-in defaults, below everything else), so a
#: team can make every cluster expire (``max_lifetime``) unless a config says otherwise.
USER_CONFIG_NAME = "config.toml"
USER_DEFAULTS = "defaults"


def user_config_path() -> Path:
    return config_dir() / USER_CONFIG_NAME


def user_defaults(specs: Mapping[str, SettingSpec]) -> tuple[str, dict[str, Any]]:
    """The user config's label ("PATH [defaults]") and those of its defaults that ``specs`` declares.

    A key another backend or plugin declares is skipped here (``region`` means nothing to
    the local backend); a key nobody declares, or a table other than ``[defaults]``, is a
    mistake: one line naming the file, exit 2, whatever the command.
    """
    path = user_config_path()
    if not os.path.lexists(path):
        return "", {}
    # There but unreadable (a dangling link to a team's shared file, a folder): an error,
    # never skipped, or its max_lifetime (what stops the bill) would go without a word.
    sections = read_config(path, advice=_USER_ADVICE)
    label = f"{path} [{USER_DEFAULTS}]"
    for name in sections:
        if name != USER_DEFAULTS:
            raise UsageError(
                f"{path} [{mask_credentials(name)}]: unknown table (the user config holds only "
                f"[{USER_DEFAULTS}], defaults for every backend and project config)"
            )
    table = sections.get(USER_DEFAULTS, {})
    known: set[str] = set()
    for key in table:
        if key not in specs:
            known = known or _every_setting_key()
            if key not in known:
                raise UsageError(f"{label} {mask_credentials(key)}: unknown key{did_you_mean(key, sorted(known))}")
    return label, {key: value for key, value in table.items() if key in specs}


def _every_setting_key() -> set[str]:
    """Every key the core, an installed backend or a plugin declares."""
    from .plugins import backends

    keys = {spec.key for spec in CORE_SETTINGS}
    for found in backends().values():
        keys.update(specs_for(found.settings))
    return keys


def check_sections(sections: Mapping[str, Any], backend: str, config_path: Path | None) -> None:
    """Every section must name an installed backend (or plugin, even one disabled now): a
    misspelled ``[lcoal]`` would otherwise be ignored and the defaults used without a word."""
    from .plugins import backends, unloaded_names

    known = {name.lower(): name for name in [backend, *unloaded_names(), *backends()]}
    for name in sections:
        if name.lower() in known:
            continue
        # A section header is config text too: a credential pasted as `[AKIA...]` stays masked.
        shown = mask_credentials(name)
        where = f"{config_path} [{shown}]" if config_path else f"[{shown}]"
        close = difflib.get_close_matches(name.lower(), list(known), n=1, cutoff=0.6)
        hint = (
            f" (did you mean [{known[close[0]]}]?)"
            if close
            else f" (no installed backend is named {shown!r}: remove the section, or install the "
            "plugin that provides it; `ess plugins` lists the backends)"
        )
        raise UsageError(f"{where}: unknown section{hint}")


def how_to_set(spec: SettingSpec) -> str:
    """The ways a user can give ``spec`` a value, naming only those that exist."""
    ways = ["the config file", spec.env] + ([spec.flag] if spec.flag else [])
    return ", ".join(ways[:-1]) + f" or {ways[-1]}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]}?)"
    return " (remove it; `ess config show` lists the known keys)"


def coerce(spec: SettingSpec, raw: Any, where: str) -> Any:
    """Convert a raw value (string from INI/env/CLI, or typed from TOML) to the spec's type.

    Errors quote the value, masked if it looks like an AWS credential: a key pasted into
    the wrong line is read before the credential file, so no registered secret covers it.
    """
    try:
        return _coerce(spec, raw, where)
    except UsageError as exc:
        message = str(exc)
        if message.startswith(where):
            raise UsageError(where + mask_credentials(message[len(where) :])) from None
        raise UsageError(mask_credentials(message)) from None


def _coerce(spec: SettingSpec, raw: Any, where: str) -> Any:
    kind = spec.type
    if isinstance(raw, str):
        limit = MAX_LIST_LENGTH if kind == "list" else MAX_VALUE_LENGTH
        if len(raw) > limit:
            raise UsageError(f"{where}: value is {len(raw)} characters long (at most {limit})")
        raw = raw.strip()
    if kind == "bool":
        value: Any = _to_bool(raw, where)
    elif kind == "int":
        value = _to_number(raw, where, int, "a whole number", spec)
    elif kind == "float":
        value = _to_number(raw, where, float, "a number", spec)
    elif kind == "list":
        value = _to_list(raw, where)
    elif kind in ("str", "path"):
        if not isinstance(raw, str):
            raise UsageError(f"{where}: expected text, got {_describe(raw)}")
        if _has_control(raw):
            raise UsageError(f"{where}: contains a control character (use plain text)")
        if spec.pattern is not None and not re.fullmatch(spec.pattern, raw):
            shown = "the value" if spec.secret else _excerpt(raw)
            raise UsageError(
                f"{where}: {shown} is not a valid {spec.key} ({spec.pattern_help or 'it must match ' + spec.pattern})"
            )
        value = raw
    else:  # pragma: no cover - a plugin declared an unknown type
        raise UsageError(f"{where}: setting type {kind!r} is not known to ess")
    if spec.choices and value not in spec.choices:
        raise UsageError(f"{where}: {value!r} is not one of {', '.join(spec.choices)}")
    return value


def _excerpt(text: str, limit: int = 40) -> str:
    """``text`` quoted, shortened to ``limit`` characters so the error stays one short line."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


def _describe(raw: Any) -> str:
    return f"{type(raw).__name__} {raw!r}"


def _to_bool(raw: Any, where: str) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in TRUE | FALSE:
        return raw.lower() in TRUE
    raise UsageError(f"{where}: {raw!r} is not true or false (write True or False)")


def _to_number(raw: Any, where: str, kind: type, noun: str, spec: SettingSpec) -> Any:
    if isinstance(raw, bool):
        raise UsageError(f"{where}: {raw!r} is not {noun}")
    try:
        if isinstance(raw, str):
            value = kind(raw.replace("_", "")) if raw.strip() else None
        else:
            value = kind(raw)
            if kind is int and value != raw:
                value = None
    except (TypeError, ValueError, OverflowError):
        value = None
    if isinstance(value, float) and not math.isfinite(value):
        value = None  # nan passes every bound check and inf is never a useful timeout
    if value is None:
        example = "3" if kind is int else "2.5"
        hint = f"try {where} {example}" if where.startswith("--") else f"write a number such as {example}"
        raise UsageError(f"{where}: {raw!r} is not {noun} ({hint})")
    if spec.minimum is not None and value < spec.minimum:
        raise UsageError(f"{where}: {value} is too small (the least is {_fmt(spec.minimum)})")
    if spec.maximum is not None and value > spec.maximum:
        raise UsageError(f"{where}: {value} is too large (the most is {_fmt(spec.maximum)})")
    return value


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


def _has_control(text: str) -> bool:
    """A NUL or a line break: no setting holds one (a tag value cannot, a name should not)."""
    return "\x00" in text or "\r" in text or "\n" in text


def _to_list(raw: Any, where: str) -> list[str]:
    if isinstance(raw, str):
        items = [item.strip() for item in raw.split(",") if item.strip()]
    elif isinstance(raw, (list, tuple)) and all(isinstance(item, str) for item in raw):
        items = [item.strip() for item in raw if item.strip()]
    else:
        raise UsageError(f"{where}: expected a list of names, got {_describe(raw)}")
    longest = max(items, key=len, default="")
    if len(longest) > MAX_VALUE_LENGTH:
        raise UsageError(
            f"{where}: item {items.index(longest) + 1} is {len(longest)} characters long (at most {MAX_VALUE_LENGTH})"
        )
    # An INI line indented under a list key continues its value: `tags: team=a` then `  b=c`
    # is one item "team=a\nb=c", not two tags (and an indented pasted credential row is
    # not an item to quote). The item is not shown: it may be that credential.
    for number, item in enumerate(items, 1):
        if _has_control(item):
            raise UsageError(
                f"{where}: item {number} spans more than one line or holds a control character "
                "(put the whole list on one line, comma-separated, or end each line but the last with a comma)"
            )
    return items


def load_settings(
    backend: Any,
    config: Path | None = None,
    *,
    cli: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings for a :class:`~ess.backend.Backend` object: its specs, every plugin's, the core's.

    The one call a command (or a plugin's test) needs: ``load_settings(backend, path)``.
    """
    return resolve(backend.name, specs_for(backend.settings), config_path=config, cli=cli, env=env)
