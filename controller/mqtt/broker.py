"""Where the broker is and who we are to it: from a URL, the rig file and the environment.

Credentials never come from the command line (shell histories, `ps`): a URL carrying a
user or password is refused. The password comes from ALSCTL_MQTT_PASSWORD, or from the file
named by ALSCTL_MQTT_PASSWORD_FILE or the rig file's `mqtt.password_file`.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from controller.config.mqtt import MqttSettings
from controller.errors import AlsError

ENV_USER = "ALSCTL_MQTT_USERNAME"
ENV_PASSWORD = "ALSCTL_MQTT_PASSWORD"
ENV_PASSWORD_FILE = "ALSCTL_MQTT_PASSWORD_FILE"
SCHEMES = {"mqtt": 1883, "mqtts": 8883}
#: CONNACK codes of a refused login: MQTT 3.1.1 (4, 5) and MQTT 5 (134, 135)
REFUSED_LOGIN = frozenset({4, 5, 134, 135})


def login_refused(rc: Any) -> bool:
    """Whether a CONNACK code (an int or paho's ReasonCode) says the broker refused our
    user: a wrong password or an unknown user, which retrying will not mend."""
    value = getattr(rc, "value", rc)
    return isinstance(value, int) and value in REFUSED_LOGIN


class MqttConfigError(AlsError):
    exit_code = 2


@dataclass(frozen=True, slots=True)
class Broker:
    host: str
    port: int
    username: str | None
    password: str | None = None
    tls: ssl.SSLContext | None = None

    @property
    def where(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @classmethod
    def from_url(
        cls,
        url: str,
        settings: MqttSettings | None = None,
        *,
        default_user: str | None = None,
        env: Mapping[str, str] | None = None,
    ) -> Broker:
        env = os.environ if env is None else env
        settings = settings or MqttSettings()
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or not parts.hostname:
            raise MqttConfigError(
                f"--mqtt {url!r}: expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]"
            )
        if parts.username or parts.password:
            raise MqttConfigError(
                f"--mqtt: no credentials in the URL (they would show in `ps` and shell"
                f" histories): set {ENV_USER} and {ENV_PASSWORD} (or {ENV_PASSWORD_FILE},"
                " or mqtt.password_file in the rig file)"
            )
        try:
            port = parts.port or SCHEMES[parts.scheme]
        except ValueError as exc:
            raise MqttConfigError(f"--mqtt {url!r}: {exc}") from None
        user = env.get(ENV_USER) or settings.username or default_user
        password = env.get(ENV_PASSWORD)
        file = env.get(ENV_PASSWORD_FILE) or settings.password_file
        if password is None and file:
            try:
                password = Path(file).read_text().strip()
            except OSError as exc:
                raise MqttConfigError(f"MQTT password file {file}: {exc.strerror}") from None
        tls = None
        if parts.scheme == "mqtts":
            t = settings.tls
            tls = ssl.create_default_context(cafile=t.ca_file if t else None)
            if t and t.cert_file:
                tls.load_cert_chain(t.cert_file, t.key_file)
        return cls(parts.hostname, port, user, password, tls)
