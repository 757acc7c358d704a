"""The web viewer (`ddavs-rt view`): a page with a live grid of every stream's overlay.

`board` keeps the newest frame of each stream, `server` serves the page, its JSON and the
images over HTTP while a subscriber thread feeds the board, `page` is the HTML and script.
"""
