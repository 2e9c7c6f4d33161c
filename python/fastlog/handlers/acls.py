"""DescribeAcls (29), CreateAcls (30), DeleteAcls (31), v0-3: the ACLs of the built-in
authorizer (`fastlog.security.acls`).

As Kafka: without `authorizer.class.name` each answer is SECURITY_DISABLED; Create and Delete
need ALTER on the cluster and Describe needs DESCRIBE on it (else CLUSTER_AUTHORIZATION_FAILED);
an ACL or filter with an unknown or ANY code where a concrete one is needed, an empty name, a
principal that is not TYPE:NAME or a CLUSTER resource not named kafka-cluster is
INVALID_REQUEST, for that ACL or filter alone. v0 has no pattern types: its ACLs are LITERAL,
and PREFIXED ones are left out of its answers. A request's changes are made together (one
metadata record in a cluster); creating an ACL that exists, or deleting with a filter that
matches nothing, succeeds.
"""

from __future__ import annotations

from typing import Optional

from fastlog import protocol
from fastlog.handlers import RequestContext, handles
from fastlog.log_manager import TopicError
from fastlog.protocol import ErrorCode
from fastlog.security.acls import AclBinding, AclFilter, Operation, PatternType, ResourceType, invalid_binding

ADMIN_TIMEOUT_SECONDS = 30.0
NO_AUTHORIZER = "No Authorizer is configured on the broker"
DESCRIBE_ACLS, CREATE_ACLS, DELETE_ACLS = 29, 30, 31


def _refusal(ctx: RequestContext, operation: int) -> Optional[tuple[int, str]]:
    """Why this request may not touch the ACLs at all, or None."""
    if ctx.broker.authorizer is None:
        return ErrorCode.SECURITY_DISABLED, NO_AUTHORIZER
    if not ctx.allows(operation, ResourceType.CLUSTER):
        return ErrorCode.CLUSTER_AUTHORIZATION_FAILED, "Cluster authorization failed"
    return None


def _filter(f, version: int) -> AclFilter:
    pattern = f.pattern_type_filter if version >= 1 else PatternType.LITERAL
    return AclFilter(f.resource_type_filter, f.resource_name_filter, pattern, f.principal_filter, f.host_filter, f.operation, f.permission_type)


def _visible(acl: AclBinding, version: int) -> bool:
    return version >= 1 or acl.pattern_type == PatternType.LITERAL


@handles(DESCRIBE_ACLS, 0, 3)
async def describe(ctx: RequestContext, request):
    R = protocol.DescribeAclsResponse
    refusal = _refusal(ctx, Operation.DESCRIBE)
    acl_filter = _filter(request, ctx.api_version)
    if refusal is None and acl_filter.invalid():
        refusal = ErrorCode.INVALID_REQUEST, acl_filter.invalid()
    if refusal is not None:
        return R(throttle_time_ms=0, error_code=refusal[0], error_message=refusal[1], resources=[])
    assert ctx.broker.authorizer is not None
    matched = sorted(a for a in ctx.broker.authorizer.store.bindings() if acl_filter.matches(a) and _visible(a, ctx.api_version))
    by_resource: dict[tuple[int, str, int], list] = {}
    for acl in matched:
        by_resource.setdefault((acl.resource_type, acl.resource_name, acl.pattern_type), []).append(
            R.AclDescription(principal=acl.principal, host=acl.host, operation=acl.operation, permission_type=acl.permission)
        )
    resources = [R.DescribeAclsResource(resource_type=t, resource_name=n, pattern_type=p, acls=acls) for (t, n, p), acls in by_resource.items()]
    return R(throttle_time_ms=0, error_code=0, error_message=None, resources=resources)


@handles(CREATE_ACLS, 0, 3)
async def create(ctx: RequestContext, request):
    R = protocol.CreateAclsResponse
    refusal = _refusal(ctx, Operation.ALTER)
    if refusal is not None:
        return R(throttle_time_ms=0, results=[R.AclCreationResult(error_code=refusal[0], error_message=refusal[1]) for _ in request.creations])
    assert ctx.broker.authorizer is not None
    errors: list[Optional[tuple[int, str]]] = []
    wanted: list[AclBinding] = []
    for c in request.creations:
        pattern = c.resource_pattern_type if ctx.api_version >= 1 else PatternType.LITERAL
        acl = AclBinding(c.resource_type, c.resource_name, pattern, c.principal, c.host, c.operation, c.permission_type)
        why = invalid_binding(acl)
        errors.append(None if why is None else (ErrorCode.INVALID_REQUEST, why))
        if why is None:
            wanted.append(acl)
    if wanted:
        try:
            await ctx.broker.authorizer.store.change(wanted, (), ADMIN_TIMEOUT_SECONDS)
        except TopicError as e:  # the cluster's quorum did not take the change in time
            errors = [error or (e.error_code, e.message) for error in errors]
    return R(throttle_time_ms=0, results=[R.AclCreationResult(error_code=e[0] if e else 0, error_message=e[1] if e else None) for e in errors])


@handles(DELETE_ACLS, 0, 3)
async def delete(ctx: RequestContext, request):
    R = protocol.DeleteAclsResponse
    refusal = _refusal(ctx, Operation.ALTER)
    if refusal is not None:
        return R(throttle_time_ms=0, filter_results=[
            R.DeleteAclsFilterResult(error_code=refusal[0], error_message=refusal[1], matching_acls=[]) for _ in request.filters
        ])
    assert ctx.broker.authorizer is not None
    store = ctx.broker.authorizer.store
    existing = store.bindings()
    results: list[tuple[Optional[tuple[int, str]], list[AclBinding]]] = []
    for f in request.filters:
        acl_filter = _filter(f, ctx.api_version)
        why = acl_filter.invalid()
        if why is not None:
            results.append(((ErrorCode.INVALID_REQUEST, why), []))
        else:
            results.append((None, sorted(a for a in existing if acl_filter.matches(a) and _visible(a, ctx.api_version))))
    removed = {acl for _, matched in results for acl in matched}
    if removed:
        try:
            await store.change((), removed, ADMIN_TIMEOUT_SECONDS)
        except TopicError as e:
            results = [(error or (e.error_code, e.message), []) for error, _ in results]
    return R(throttle_time_ms=0, filter_results=[
        R.DeleteAclsFilterResult(
            error_code=error[0] if error else 0, error_message=error[1] if error else None,
            matching_acls=[
                R.DeleteAclsMatchingAcl(error_code=0, error_message=None, resource_type=a.resource_type, resource_name=a.resource_name,
                                        pattern_type=a.pattern_type, principal=a.principal, host=a.host, operation=a.operation, permission_type=a.permission)
                for a in matched
            ],
        )
        for error, matched in results
    ])
