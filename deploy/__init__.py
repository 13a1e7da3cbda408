"""Deployment: RabbitMQ definitions and PostgreSQL set-up derived from the code, compose and Kubernetes files."""
