"""``pubsub.mqtt`` metadata: Dapr's mqtt3 YAML as written, our defaults, file:line problems,
and TLS (PEM text or files) against a mosquitto TLS listener with client certificates."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import textwrap
from pathlib import Path

import pytest

from edge_runtime.config.loader import load_resources
from edge_runtime.config.metadata import MetadataError, declared_metadata
from edge_runtime.config.resolve import resolve_metadata
from edge_runtime.pubsub import Message
from edge_runtime.pubsub.mqtt import MqttMetadata, MqttPubSub, create
from edge_runtime.pubsub.mqtt.metadata import parse
from edge_runtime.registry import ComponentContext
from tests.pubsub.conftest import Inbox, MakePubSub, connected, context
from tests.support.mosquitto import Mosquitto

DAPR_YAML = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: messagebus
spec:
  type: pubsub.mqtt3
  version: v1
  metadata:
  - name: url
    value: "tcp://edge:p%40ss@broker.local:1884"
  - name: qos
    value: 2
  - name: retain
    value: "true"
  - name: cleanSession
    value: true
  - name: consumerID
    value: "{appID}-sub"
"""


def load(tmp_path: Path, text: str, app_id: str = "orders") -> ComponentContext:
    """Load one component document with the real loader and resolver."""
    path = tmp_path / "components" / "pubsub.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, encoding="utf-8")
    res = load_resources([path])
    assert not res.problems, res.problems
    (manifest,) = res.components
    md = resolve_metadata(manifest, app_id=app_id, environ={})
    return ComponentContext(manifest, md, app_id, tmp_path)


def with_entries(**entries: str) -> str:
    """Dapr's YAML with more metadata entries; entry i of these is on line 20 + 2i."""
    extra = "".join(f"  - name: {k}\n    value: {v!r}\n" for k, v in entries.items())
    return DAPR_YAML + extra


def test_dapr_mqtt3_yaml(tmp_path: Path) -> None:
    settings = parse(load(tmp_path, DAPR_YAML))
    md = settings.metadata
    assert (settings.host, settings.port, settings.tls) == ("broker.local", 1884, None)
    assert (settings.username, settings.password) == ("edge", "p@ss")
    assert settings.client_id == "orders-sub"
    assert (md.qos, md.retain, md.clean_session) == (2, True, True)
    assert (md.protocol, md.keep_alive, md.inflight) == ("3.1.1", 30.0, 100)
    assert (md.reconnect_min, md.reconnect_max, md.connect_timeout) == (0.5, 30.0, 10.0)
    assert md.publish_timeout == 20.0
    assert not settings.mqtt5
    assert declared_metadata(create) is MqttMetadata
    assert "p@ss" not in repr(settings)


@pytest.mark.parametrize(
    ("url", "host", "port", "tls"),
    [
        ("mqtt://h", "h", 1883, False),
        ("TCP://h:2000/", "h", 2000, False),
        ("tcp://[::1]:1883", "::1", 1883, False),
        ("ssl://h", "h", 8883, True),
        ("mqtts://h:9000", "h", 9000, True),
        ("tcps://h", "h", 8883, True),
        ("tls://h", "h", 8883, True),
    ],
)
def test_url_schemes(tmp_path: Path, url: str, host: str, port: int, tls: bool) -> None:
    settings = parse(context({"url": url}, tmp_path))
    assert (settings.host, settings.port, settings.tls is not None) == (host, port, tls)
    assert settings.client_id == "app"  # the app id by default
    assert settings.username is None


def test_our_names(tmp_path: Path) -> None:
    md = parse(context({
        "url": "tcp://h", "protocol": "5", "keepAlive": "1m", "reconnectMin": "100ms",
        "reconnectMax": "2s", "inflight": "8", "consumerGroup": "workers",
        "connectTimeout": "3s", "publishTimeout": "1500ms",
    }, tmp_path)).metadata
    assert (md.protocol, md.keep_alive, md.reconnect_min, md.reconnect_max) == ("5", 60, 0.1, 2)
    assert (md.inflight, md.consumer_group, md.connect_timeout, md.publish_timeout) == (
        8, "workers", 3.0, 1.5)


@pytest.mark.parametrize(
    ("entries", "line", "field", "message"),
    [
        ({"keepAlive": "soon"}, 20, "keepAlive", "duration"),
        ({"protocol": "4"}, 20, "protocol", "one of 3.1.1, 5"),
        ({"inflight": "0"}, 20, "inflight", "from 1 to 65535"),
        ({"consumerGroup": "g"}, 20, "consumerGroup", "protocol: 5"),
        ({"protocol": "5", "consumerGroup": "a/b"}, 22, "consumerGroup", "'/'"),
        ({"reconnectMin": "5s", "reconnectMax": "1s"}, 20, "reconnectMin", "reconnectMax"),
    ],
)
def test_bad_values_name_file_and_line(tmp_path: Path, entries: dict[str, str], line: int,
                                       field: str, message: str) -> None:
    with pytest.raises(MetadataError) as err:
        parse(load(tmp_path, with_entries(**entries)))
    (problem,) = err.value.problems
    assert str(problem.mark) == f"{tmp_path}/components/pubsub.yaml:{line}"
    assert problem.field == f"spec.metadata.{field}"
    assert message in problem.message
    assert "component 'messagebus' (pubsub.mqtt3)" in str(problem)


def test_every_bad_value_is_reported(tmp_path: Path) -> None:
    text = DAPR_YAML.replace("value: 2", "value: 3").replace('"true"', '"maybe"')
    with pytest.raises(MetadataError) as err:
        parse(load(tmp_path, text))
    assert [(p.mark.line if p.mark else 0, p.field) for p in err.value.problems] == [
        (12, "spec.metadata.qos"), (14, "spec.metadata.retain"),
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h", "scheme must be one of"),
        ("tcp://", "no host"),
        ("tcp://h:99999", "bad port"),
        ("tcp://h:0", "port 0"),
        ("tcp://h/topic", "no path"),
        ("h:1883", "scheme"),
    ],
)
def test_bad_urls(tmp_path: Path, url: str, message: str) -> None:
    with pytest.raises(MetadataError, match=message) as err:
        parse(load(tmp_path, DAPR_YAML.replace("tcp://edge:p%40ss@broker.local:1884", url)))
    assert err.value.problems[0].mark is not None
    assert err.value.problems[0].mark.line == 10


def test_missing_url_and_client_id(tmp_path: Path) -> None:
    with pytest.raises(MetadataError, match=r"url.*is required"):
        parse(context({}, tmp_path))
    with pytest.raises(MetadataError, match="consumerID"):
        parse(context({"url": "tcp://h"}, tmp_path, app_id=""))


def test_tls_files_with_a_plain_url_are_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = parse(context({"url": "tcp://h", "caCert": "whatever"}, tmp_path))
    assert settings.tls is None
    assert "caCert ignored" in caplog.text


@pytest.mark.parametrize(
    ("entries", "field", "message"),
    [
        ({"caCert": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"},
         "caCert", "not a usable PEM"),
        ({"caCert": "missing.pem"}, "caCert", "readable PEM file"),
        ({"clientCert": "-----BEGIN CERTIFICATE-----"}, "clientCert", "needs clientKey"),
        ({"clientKey": "-----BEGIN PRIVATE KEY-----"}, "clientKey", "needs clientCert"),
        ({"clientCert": "-----BEGIN CERTIFICATE-----", "clientKey": "-----BEGIN KEY-----"},
         "clientCert", "not a usable PEM"),
    ],
)
def test_bad_tls_material(tmp_path: Path, entries: dict[str, str], field: str,
                          message: str) -> None:
    with pytest.raises(MetadataError, match=message) as err:
        parse(context({"url": "ssl://h", **entries}, tmp_path))
    assert err.value.problems[0].field == f"spec.metadata.{field}"


# --- TLS against mosquitto --------------------------------------------------------------------


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=30)


def make_pki(folder: Path) -> Path:
    """A CA, a server certificate for 127.0.0.1 and a client certificate (EC keys: fast)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    folder.mkdir()
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
            "-subj", "/CN=edge-test-ca", cwd=folder)
    for name, san in (("server", "IP:127.0.0.1"), ("client", "DNS:edge-client")):
        openssl("req", *ec, "-keyout", f"{name}.key", "-out", f"{name}.csr",
                "-subj", f"/CN={name}", cwd=folder)
        (folder / f"{name}.ext").write_text(f"subjectAltName={san}\n", encoding="ascii")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1",
                "-extfile", f"{name}.ext", cwd=folder)
    return folder


@pytest.mark.broker
async def test_tls_round_trip_with_client_certificate(
    make_pubsub: MakePubSub, tmp_path: Path, uid: str
) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = textwrap.dedent(f"""\
        cafile {pki}/ca.crt
        certfile {pki}/server.crt
        keyfile {pki}/server.key
        require_certificate true
        """)
    with Mosquitto(tmp_path / "tls", extra_config=tls) as broker:
        url = f"ssl://127.0.0.1:{broker.port}"
        shutil.copy(pki / "client.crt", tmp_path / "client.crt")  # relative to the data dir
        ca_pem = (pki / "ca.crt").read_text(encoding="ascii")
        key_pem = (pki / "client.key").read_text(encoding="ascii")
        ps = make_pubsub(url, consumerID=f"tls-{uid}", caCert=ca_pem, clientCert="client.crt",
                         clientKey=key_pem)
        assert isinstance(ps, MqttPubSub)
        assert isinstance(ps.settings.tls, ssl.SSLContext)
        inbox = Inbox()
        await ps.subscribe(f"{uid}/tls", inbox)
        await ps.init()
        await connected(ps)
        await ps.publish(Message(f"{uid}/tls", b"secret"))
        assert (await inbox.get()).data == b"secret"
        await ps.close()
