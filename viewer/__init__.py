"""The desktop viewer (``sensorlabel view X.drive``): a PySide6 + pyqtgraph application for correcting labels.

Layer 6, the top: it may import every library layer, and nothing in the library imports it. Only this package
imports Qt. ``model/`` is pure Python (session, selection, command stack) and is tested without Qt; ``views/`` are
the Qt widgets; ``controller.py`` connects them; ``app.py`` builds the main window (:func:`app.run_viewer`).
"""
