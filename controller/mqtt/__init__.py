"""The supervisory API (docs/spec.md 6): a treatment published over MQTT, commands brought back.

`bridge` connects a running controller to a broker, `models` are the payloads (and the
AsyncAPI schemas), `broker` reads where the broker is and the credentials, `monitor` is the
terminal view, `asyncapi` writes docs/asyncapi.yaml, `local` runs a Mosquitto for tests
and benches.
"""
