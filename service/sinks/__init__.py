"""Sinks: every recorded verdict, delivered to the line (webhook, MQTT, OPC UA) from the
outbox.

* :mod:`.config`    ``KENSA_SINKS_FILE`` (YAML): which sinks, their filters, checked at start
* :mod:`.webhook`   POST of the record as JSON, signed (``X-Kensa-Signature``)
* :mod:`.mqtt`      publish to an MQTT broker, QoS 1, the last verdict per topic retained
* :mod:`.opcua`     an OPC UA server whose nodes hold each source's last verdict
* :mod:`.dispatch`  one thread per sink: reads the outbox in order (one server per sink at a
                    time, by lease), retries with backoff, drops beyond the backlog, counts it
                    all for Prometheus
"""

from __future__ import annotations

from ..config import Settings
from .config import SinksConfigError, SinksFile, load_sinks


def sinks_of(settings: Settings) -> SinksFile | None:
    """The sinks ``KENSA_SINKS_FILE`` names (None when unset).

    Raises:
        SinksConfigError: the file is wrong, or recording is off (the outbox lives in the
            records store).
    """
    if settings.sinks_file is None:
        return None
    if not settings.records:
        raise SinksConfigError(f"KENSA_SINKS_FILE {settings.sinks_file} needs recording on: "
                               "sinks are fed from the records store's outbox; unset "
                               "KENSA_RECORDS=off or unset KENSA_SINKS_FILE")
    sinks = load_sinks(settings.sinks_file)
    for i, sink in enumerate(sinks.sinks):
        # one delivery (MQTT: connect, then publish) must end well within the lease, or
        # another server could take the sink over while it is still under way
        if sink.type != "opcua" and sink.timeout_s * 3 > settings.sinks_lease_s:
            raise SinksConfigError(
                f"KENSA_SINKS_FILE {settings.sinks_file}: sinks[{i}].timeout_s "
                f"{sink.timeout_s:g} is too long for KENSA_SINKS_LEASE_S "
                f"{settings.sinks_lease_s:g}: make it at most a third of the lease")
    return sinks


def names(sinks: SinksFile | None) -> tuple[str, ...]:
    return tuple(s.name for s in sinks.sinks) if sinks else ()


def local_names(sinks: SinksFile | None) -> tuple[str, ...]:
    """The sinks each server delivers itself (OPC UA), with no shared position or lease."""
    return tuple(s.name for s in sinks.sinks if s.type == "opcua") if sinks else ()


def start_dispatcher(sinks: SinksFile | None, store, registry, lease_s: float = 30.0):
    """Starts delivering ``store``'s outbox to ``sinks``; None when there are none.

    Raises:
        SinksConfigError: a sink cannot start (an OPC UA port that is taken).
    """
    if not sinks or store is None:
        return None
    from .dispatch import Dispatcher

    dispatcher = Dispatcher(sinks, store.outbox, registry, lease_s)
    dispatcher.start()
    return dispatcher
