"""How the gateway runs a GraphQL query or mutation: each distinct document parsed and
validated once, then graphql-core's executor.

Strawberry's `Schema.execute` builds, for every request, an execution context, an instance of
every schema extension and an async context manager per extension and stage (operation,
parsing, validation, execution), even when its parser and validation caches answer: ~55 us of
the ~65 us a `{ __typename }` costs, and a third of a one-formula query. `GatewaySchema.execute`
(which `POST /graphql` and strawberry's own `/graphql` routes both call) does the same work
directly:

- a document is parsed with the token limit (MAX_TOKENS) and validated with GraphQL's rules
  plus the limit rules (depth, aliases) once per distinct text, in a bounded cache
  (CACHED_DOCUMENTS); its syntax and validation errors are cached with it;
- the operation's type is checked against what the transport allows (no mutation over GET,
  no subscription over plain HTTP), with strawberry's exceptions, so its views answer as
  they did;
- graphql-core executes it with strawberry's execution context class, the resolver hooks of
  the schema's extensions (tracing's resolver spans) as middleware;
- errors are logged by `process_errors` and the unexpected ones masked.

Subscriptions (`subscribe`, the WebSocket) keep strawberry's pipeline, with extensions built
from the same limits and the same masking (`extensions()`).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from typing import Any

import strawberry
from graphql import DocumentNode, GraphQLError, execute, parse, specified_rules
from strawberry.exceptions import MissingQueryError
from strawberry.execution.is_awaitable import optimized_is_awaitable
from strawberry.extensions import (
    AddValidationRules,
    MaskErrors,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.schema.schema import DEFAULT_ALLOWED_OPERATION_TYPES, validate_document
from strawberry.types import ExecutionContext, ExecutionResult
from strawberry.types.graphql import OperationType
from strawberry.utils.operation import get_operation_type

from bem.errors import BemError

log = logging.getLogger("bem.graphql")

MAX_DEPTH = 10  # nesting of selections (node.successors.successors... is how one goes deep)
MAX_TOKENS = 2000  # lexical tokens of a document; send big inputs as variables
MAX_ALIASES = 30  # aliases fan one field out into many backend calls
CACHED_DOCUMENTS = 256  # parsed and validated query texts kept (bounded: texts are the
#                         client's choice)
LIMIT_RULES = (*QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
               *MaxAliasesLimiter(MAX_ALIASES).validation_rules)
RULES = (*specified_rules, *LIMIT_RULES)
MASKED_MESSAGE = "internal error in the gateway; see its log"


def unexpected(error: GraphQLError) -> bool:
    """An error that is neither a GraphQL error nor a service's answer: masked."""
    original = error.original_error
    return original is not None and not isinstance(original, GraphQLError | BemError)


def masking() -> MaskErrors:
    """Strawberry's masking of the unexpected errors: the subscriptions' extension, and what
    `GatewaySchema` masks queries and mutations with."""
    return MaskErrors(should_mask_error=unexpected, error_message=MASKED_MESSAGE)


def extensions() -> list[Any]:
    """Strawberry extensions with the same limits and masking, for subscriptions. Factories,
    not instances: an extension may keep per-request state (strawberry issue 4369)."""
    return [lambda: AddValidationRules(list(LIMIT_RULES)),
            lambda: MaxTokensLimiter(MAX_TOKENS),
            masking]


class Prepared:
    """A document as parsed and validated: `document` None when it has errors."""

    __slots__ = ("document", "errors")

    def __init__(self, document: DocumentNode | None, errors: list[GraphQLError]) -> None:
        self.document = document
        self.errors = errors


class GatewaySchema(strawberry.Schema):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.prepared = functools.lru_cache(maxsize=CACHED_DOCUMENTS)(self._prepare)
        self._mask = masking()  # anonymise_error only: it keeps no per-request state

    def _prepare(self, query: str) -> Prepared:
        try:
            document = parse(query, max_tokens=MAX_TOKENS)
        except GraphQLError as error:
            return Prepared(None, [error])
        errors = validate_document(self._schema, document, RULES)
        return Prepared(document, errors)

    def _middleware(self) -> list[SchemaExtension]:
        """The extensions that hook resolvers (tracing's spans), one instance each."""
        return [ext() for ext in self.extensions
                if isinstance(ext, type) and ext._implements_resolve()]

    async def execute(self, query: str | None, variable_values: dict[str, Any] | None = None,
                      context_value: Any | None = None, root_value: Any | None = None,
                      operation_name: str | None = None,
                      allowed_operation_types: Iterable[OperationType] | None = None,
                      operation_extensions: dict[str, Any] | None = None) -> ExecutionResult:
        if not query:
            raise MissingQueryError
        prepared = self.prepared(query)
        if prepared.document is None:  # a syntax error, or too many tokens
            return self._failed(prepared.errors)
        try:
            operation_type = get_operation_type(prepared.document, operation_name)
        except RuntimeError as error:
            raise CannotGetOperationTypeError(operation_name) from error
        if operation_type not in (allowed_operation_types or DEFAULT_ALLOWED_OPERATION_TYPES):
            raise InvalidOperationTypeError(operation_type)
        if prepared.errors:
            return self._failed(prepared.errors)
        result = execute(self._schema, prepared.document, root_value=root_value,
                         context_value=context_value, variable_values=variable_values,
                         operation_name=operation_name, middleware=self._middleware(),
                         executor_class=self.execution_context_class,
                         is_awaitable=optimized_is_awaitable,
                         operation_extensions=operation_extensions)
        if optimized_is_awaitable(result):
            result = await result
        if result.errors:
            return self._failed(result.errors, result.data)
        return ExecutionResult(data=result.data, errors=None)

    def _failed(self, errors: list[GraphQLError], data: dict[str, Any] | None = None
                ) -> ExecutionResult:
        self.process_errors(errors)
        return ExecutionResult(data=data, errors=[self._mask.anonymise_error(e)
                                                  if unexpected(e) else e for e in errors])

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: ExecutionContext | None = None) -> None:
        # A client's mistake (syntax, limits, a 4xx from a service) is the client's news,
        # not an incident: only failures of the platform reach the log.
        for error in errors:
            status = (error.extensions or {}).get("status")
            if unexpected(error):
                log.error("GraphQL resolver failed at %s", error.path,
                          exc_info=error.original_error)
            elif isinstance(status, int) and status >= 500:
                log.warning("GraphQL %s: %s", error.path, error.message)
