"""The pure core: types, payloads, signing, matching, schedules. No I/O lives here."""
