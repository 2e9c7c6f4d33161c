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
SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"
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


def login_credentials(config: "BrokerConfig", listener: str, mechanism: str) -> tuple[str, str]:
    """(user, password) this broker logs in with to another broker's SASL listener: the
    `username` and `password` options of the listener's login module for `mechanism`
    (PlainLoginModule, ScramLoginModule), as Kafka's inter-broker clients take them."""
    text, source = jaas_text(config, listener, mechanism)
    module = PLAIN_MODULE if mechanism == "PLAIN" else SCRAM_MODULE
    for name, options in parse_entries(text or "", source):
        if name == module and "username" in options and "password" in options:
            return options["username"], options["password"]
    raise ConfigError(
        f"listener {listener} is the inter-broker listener with SASL {mechanism}: its JAAS config ({source or 'none found'}) "
        f"needs {module} username=\"...\" password=\"...\" for this broker's own login"
    )


def jaas_text(config: "BrokerConfig", listener: str, mechanism: str = "PLAIN") -> tuple[Optional[str], str]:
    value = config.listener_setting(listener, "sasl.jaas.config", mechanism)
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
