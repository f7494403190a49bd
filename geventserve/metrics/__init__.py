"""What --metrics-bind shows: the numbers each worker keeps in shared memory (layout), how a
worker records them (recorder), how the supervisor sums and renders them (collect, exposition)
and serves them from its own loop (endpoint), the app's prometheus_client metrics (appmetrics),
and ``geventserve status`` (status)."""
