"""gRPC servicers: thin, validate input, map errors to status codes with a reason."""
