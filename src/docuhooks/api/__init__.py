"""The HTTP edge: routes parse, call one service function, serialize."""
