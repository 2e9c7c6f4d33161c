"""ListTransactions (66): the transactional ids this coordinator knows, filtered by state names
(unknown names are returned in `unknown_state_filters`), producer ids and (v1) how long the
transaction has been open (`duration_filter` ms, -1: any). Ids the client may not DESCRIBE are
left out, as in Kafka.
"""

from __future__ import annotations

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.security.acls import Operation, ResourceType
from fastlog.transaction_coordinator import STATES_BY_NAME

R = protocol.ListTransactionsResponse


@handles(66, 0, 1)
async def handle(ctx: RequestContext, request):
    coordinator = ctx.broker.transactions
    if error := coordinator.unavailable():
        return R(throttle_time_ms=0, error_code=error, unknown_state_filters=[], transaction_states=[])
    unknown = [name for name in request.state_filters if name not in STATES_BY_NAME]
    states = {STATES_BY_NAME[name] for name in request.state_filters if name in STATES_BY_NAME}
    if request.state_filters and not states:
        return R(throttle_time_ms=0, error_code=0, unknown_state_filters=unknown, transaction_states=[])
    duration = request.duration_filter if ctx.api_version >= 1 else -1
    listed = [
        R.TransactionState(transactional_id=m.transactional_id, producer_id=m.producer_id, transaction_state=m.state.kafka_name)
        for m in coordinator.matching(states, set(request.producer_id_filters), duration)
        if ctx.allows(Operation.DESCRIBE, ResourceType.TRANSACTIONAL_ID, m.transactional_id, log_denied=False)
    ]
    return R(throttle_time_ms=0, error_code=0, unknown_state_filters=unknown, transaction_states=listed)
