"""What more than one service needs (retention law, the erasure deadline), so no service imports another's."""
