"""Security: TLS (`tls.py`), SASL authentication (`sasl.py`, with PLAIN's users from JAAS
configs in `jaas.py` and SCRAM credentials in `scram.py`).

Every connection has a principal, Kafka's `User:<name>`: the SASL user, else the client
certificate's mapped subject on a TLS listener that asked for one, else `ANONYMOUS`.
"""

ANONYMOUS = "ANONYMOUS"
