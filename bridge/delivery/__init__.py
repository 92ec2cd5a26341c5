"""Application services shared by the web layer and the CLI: receive, dispatch, replay, admin."""
