"""Events on the broker (RabbitMQ), with nothing lost: the wire schema of every event (`schema`), the
topology of exchanges and queues (`topology`), a publisher that answers only once an event is durably
stored, in the broker or in the outbox (`publisher`, `store`), and idempotent consumers with retries
and a dead-letter queue (`consumer`). Metrics: `metrics`."""
