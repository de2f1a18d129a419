"""The Orderspace API client: plain Python (httpx + pyrate-limiter), no Dagster.

```python
from orderspace_pipelines.client import OrderspaceClient
with OrderspaceClient.from_settings(OrderspaceSettings.from_env()) as client:
    for order in client.list_orders(created_since="2026-10-01"):
        ...
```
"""

from orderspace_pipelines.client.auth import ClientCredentialsAuth
from orderspace_pipelines.client.client import (
    INVENTORY_BATCH_LIMIT,
    MAX_PAGE_SIZE,
    OrderspaceClient,
    Page,
)
from orderspace_pipelines.client.errors import (
    APIError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    NotFoundError,
    OrderspaceError,
    RateLimitError,
    ResponseFormatError,
    ServerError,
    TransportError,
    ValidationError,
)
from orderspace_pipelines.client.filters import LIST_FILTERS, ORDER_STATUSES, filter_params
from orderspace_pipelines.client.throttle import RequestThrottle, default_throttle_path
from orderspace_pipelines.client.token_store import (
    TOKEN_CACHE_ENV,
    FileTokenStore,
    MemoryTokenStore,
    StoredToken,
    TokenStore,
    default_token_cache_path,
)
from orderspace_pipelines.client.transport import RequestStats, ThrottledRetryTransport

__all__ = [
    "INVENTORY_BATCH_LIMIT",
    "LIST_FILTERS",
    "MAX_PAGE_SIZE",
    "ORDER_STATUSES",
    "TOKEN_CACHE_ENV",
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ClientCredentialsAuth",
    "ConfigurationError",
    "FileTokenStore",
    "MemoryTokenStore",
    "NotFoundError",
    "OrderspaceClient",
    "OrderspaceError",
    "Page",
    "RateLimitError",
    "RequestStats",
    "RequestThrottle",
    "ResponseFormatError",
    "ServerError",
    "StoredToken",
    "ThrottledRetryTransport",
    "TokenStore",
    "TransportError",
    "ValidationError",
    "default_throttle_path",
    "default_token_cache_path",
    "filter_params",
]
