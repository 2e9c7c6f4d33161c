"""DescribeUserScramCredentials (50, v0) and AlterUserScramCredentials (51, v0): SCRAM users.

Alter takes salted passwords (the client salts and hashes; the broker keeps the derived keys,
`fastlog.security.scram`) and answers one result per user named. As Kafka: an empty name or
iterations outside [scram.iterations.min (4096), 16384] or an empty salt or salted password is
UNACCEPTABLE_CREDENTIAL, a mechanism other than 1 (SCRAM-SHA-256) or 2 (SCRAM-SHA-512)
UNSUPPORTED_SASL_MECHANISM, the same user and mechanism twice in a request DUPLICATE_RESOURCE,
deleting a credential that does not exist RESOURCE_NOT_FOUND; a user with any error has none
of its changes made. Describe with no users (null or empty) lists every user with a
credential; a named user without one is RESOURCE_NOT_FOUND, a name given twice DUPLICATE_RESOURCE.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.log_manager import TopicError
from fastlog.protocol import ErrorCode
from fastlog.security.scram import CODES, MAX_ITERATIONS, MECHANISM_CODES, credential_from_salted_password
from fastlog.security.acls import Operation, ResourceType

ADMIN_TIMEOUT_SECONDS = 30.0


@handles(50, 0, 0)
async def describe(ctx: RequestContext, request):
    R = protocol.DescribeUserScramCredentialsResponse
    if not ctx.allows(Operation.DESCRIBE, ResourceType.CLUSTER):
        return R(throttle_time_ms=0, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed", results=[])
    users = ctx.broker.scram.users()
    asked = [u.name for u in request.users] if request.users else sorted(users)
    counts = Counter(asked)
    results = []
    for name in dict.fromkeys(asked):
        if counts[name] > 1:
            results.append(R.DescribeUserScramCredentialsResult(user=name, error_code=ErrorCode.DUPLICATE_RESOURCE,
                           error_message="Cannot describe SCRAM credentials for the same user twice in a single request", credential_infos=[]))
        elif not users.get(name):
            results.append(R.DescribeUserScramCredentialsResult(user=name, error_code=ErrorCode.RESOURCE_NOT_FOUND,
                           error_message=f"Attempt to describe a user credential that does not exist: {name}", credential_infos=[]))
        else:
            infos = [R.CredentialInfo(mechanism=CODES[m], iterations=c.iterations) for m, c in sorted(users[name].items())]
            results.append(R.DescribeUserScramCredentialsResult(user=name, error_code=0, error_message=None, credential_infos=infos))
    return R(throttle_time_ms=0, error_code=0, error_message=None, results=results)


@handles(51, 0, 0)
async def alter(ctx: RequestContext, request):
    R = protocol.AlterUserScramCredentialsResponse
    if not ctx.allows(Operation.ALTER, ResourceType.CLUSTER):
        names = dict.fromkeys([d.name for d in request.deletions] + [u.name for u in request.upsertions])
        return R(throttle_time_ms=0, results=[
            R.AlterUserScramCredentialsResult(user=n, error_code=ErrorCode.CLUSTER_AUTHORIZATION_FAILED, error_message="Cluster authorization failed") for n in names
        ])
    store = ctx.broker.scram
    minimum = ctx.broker.config["scram.iterations.min"]
    seen = Counter([(d.name, d.mechanism) for d in request.deletions] + [(u.name, u.mechanism) for u in request.upsertions])
    errors: dict[str, tuple[int, str]] = {}
    for d in request.deletions:
        problem = _mechanism_problem(d.name, d.mechanism, seen)
        if problem is None and store.get(d.name, MECHANISM_CODES[d.mechanism]) is None:
            problem = (ErrorCode.RESOURCE_NOT_FOUND, "Attempt to delete a user credential that does not exist")
        if problem is not None:
            errors.setdefault(d.name, problem)
    for u in request.upsertions:
        problem = _mechanism_problem(u.name, u.mechanism, seen)
        if problem is None:
            problem = _upsertion_problem(u, minimum)
        if problem is not None:
            errors.setdefault(u.name, problem)
    users = list(dict.fromkeys([d.name for d in request.deletions] + [u.name for u in request.upsertions]))
    deletions = [(d.name, MECHANISM_CODES[d.mechanism]) for d in request.deletions if d.name not in errors]
    upserts = [
        (u.name, MECHANISM_CODES[u.mechanism], credential_from_salted_password(MECHANISM_CODES[u.mechanism], bytes(u.salt), bytes(u.salted_password), u.iterations))
        for u in request.upsertions if u.name not in errors
    ]
    if deletions or upserts:
        try:
            await store.change(upserts, deletions, ADMIN_TIMEOUT_SECONDS)
        except TopicError as e:  # the cluster's quorum did not take the change in time
            for name in users:
                errors.setdefault(name, (e.error_code, e.message))
    results = [R.AlterUserScramCredentialsResult(user=name, error_code=errors.get(name, (0, None))[0], error_message=errors.get(name, (0, None))[1]) for name in users]
    return R(throttle_time_ms=0, results=results)


def _mechanism_problem(name: str, mechanism: int, seen: Counter) -> Optional[tuple[int, str]]:
    if not name:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "Username must not be empty"
    if mechanism not in MECHANISM_CODES:
        return ErrorCode.UNSUPPORTED_SASL_MECHANISM, f"Unknown SCRAM mechanism {mechanism}"
    if seen[(name, mechanism)] > 1:
        return ErrorCode.DUPLICATE_RESOURCE, "A user credential cannot be altered twice in the same request"
    return None


def _upsertion_problem(upsertion, minimum: int) -> Optional[tuple[int, str]]:
    if upsertion.iterations < minimum:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, f"Too few iterations: {upsertion.iterations} (at least {minimum})"
    if upsertion.iterations > MAX_ITERATIONS:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, f"Too many iterations: {upsertion.iterations} (at most {MAX_ITERATIONS})"
    if not upsertion.salt or not upsertion.salted_password:
        return ErrorCode.UNACCEPTABLE_CREDENTIAL, "The salt and the salted password must not be empty"
    return None
