"""JAAS login-module configuration, as Kafka reads it: PLAIN's users are the
`user_<name>="<password>"` options of `PlainLoginModule`.

From, in falling precedence: `listener.name.<listener>.plain.sasl.jaas.config`,
`listener.name.<listener>.sasl.jaas.config`, `sasl.jaas.config`, and the file named by
`java.security.auth.login.config` (its `<listener>.KafkaServer` section, else `KafkaServer`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from fastlog.config import ConfigError

if TYPE_CHECKING:
    from fastlog.config import BrokerConfig

PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
_ENTRY = re.compile(r"\s*([\w.$]+)\s+(required|requisite|sufficient|optional)((?:\s+[\w.-]+\s*=\s*(?:\"(?:\\.|[^\"\\])*\"|[^\s;]+))*)\s*;", re.S)
_OPTION = re.compile(r"([\w.-]+)\s*=\s*(?:\"((?:\\.|[^\"\\])*)\"|([^\s;]+))")
_SECTION = re.compile(r"([\w.-]+)\s*\{(.*?)\}\s*;", re.S)


def parse_entries(text: str, source: str) -> list[tuple[str, dict[str, str]]]:
    """(login module class, options) of each entry of a JAAS config value."""
    entries, at = [], 0
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    while text[at:].strip():
        match = _ENTRY.match(text, at)
        if match is None:
            raise ConfigError(f"{source}: cannot read the JAAS entry at {text[at:at + 60].strip()!r} (Class required key=\"value\" ...;)")
        options = {m.group(1): (m.group(2).replace('\\"', '"').replace("\\\\", "\\") if m.group(2) is not None else m.group(3)) for m in _OPTION.finditer(match.group(3))}
        entries.append((match.group(1), options))
        at = match.end()
    return entries


def plain_users(config: "BrokerConfig", listener: str) -> dict[str, str]:
    """PLAIN's users (name -> password) for a listener; empty when none is configured."""
    text, source = jaas_text(config, listener)
    if text is None:
        return {}
    users: dict[str, str] = {}
    for module, options in parse_entries(text, source):
        if module == PLAIN_MODULE:
            users.update({key[len("user_") :]: value for key, value in options.items() if key.startswith("user_")})
    return users


def jaas_text(config: "BrokerConfig", listener: str) -> tuple[Optional[str], str]:
    value = config.listener_setting(listener, "sasl.jaas.config", "PLAIN")
    if value:
        return value, "sasl.jaas.config"
    path = config["java.security.auth.login.config"]
    if not path:
        return None, ""
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"java.security.auth.login.config: cannot read {path}: {e.strerror}") from None
    text = re.sub(r"//[^\n]*|/\*.*?\*/", "", text, flags=re.S)
    sections = {m.group(1): m.group(2) for m in _SECTION.finditer(text)}
    for name in (f"{listener.lower()}.KafkaServer", "KafkaServer"):
        if name in sections:
            return sections[name], f"{path} ({name})"
    return None, ""
