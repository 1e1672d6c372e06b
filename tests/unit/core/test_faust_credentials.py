from streamml.common.settings import KafkaSettings
from streamml.common.spec import load_spec
from streamml.features.faust_app import FeaturesAppSettings, broker_credentials, build_app


def test_plaintext_has_no_credentials():
    assert broker_credentials(KafkaSettings(security_protocol="PLAINTEXT")) is None


def test_sasl_settings_reach_faust(elec2_spec_path):
    settings = KafkaSettings(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="svc", sasl_password="pw")
    credentials = broker_credentials(settings)
    assert credentials.username == "svc"
    assert credentials.password == "pw"
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert credentials.protocol.value == "SASL_PLAINTEXT"
    app = build_app(load_spec(elec2_spec_path), FeaturesAppSettings(credentials=credentials))
    assert app.conf.broker_credentials is credentials
    assert "pw" not in repr(credentials)


def test_sasl_ssl_gets_a_tls_context():
    credentials = broker_credentials(KafkaSettings(security_protocol="SASL_SSL", sasl_username="svc", sasl_password="pw"))
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context is not None
