"""The operator's console (Textual): `feed.py` what it shows, kept from the loop's event bus;
`widgets.py` the panels; `app.py` the app, its keys and dialogs; `run.py` a treatment and its
console in one asyncio loop; `journal.py` a finished session from the journal, read-only."""
