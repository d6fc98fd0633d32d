"""One small module per stage. Stages never call each other; they read earlier results from the context."""
