"""The static catalogue site: builder and paginated listings."""
