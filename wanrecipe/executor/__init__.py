"""The runner: quota-aware async DAG execution against a DashScope-compatible backend."""
