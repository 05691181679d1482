"""3D view of the current sweep: one scatter item for all points, one line item for every box edge and heading.

Why the view is a plain QWidget that renders OpenGL offscreen: a ``QOpenGLWidget`` anywhere in a window makes Qt
compose the *whole* window through OpenGL on every repaint (the raster backing store is uploaded as a texture and
the window is swapped), so with software GL even a one-label change costs ~20 ms and a frame step with ten views
costs hundreds. Here the scene is drawn with pyqtgraph's GL items into a framebuffer object of an offscreen
context (the controller issues the drawing as soon as the frame's points and boxes are set, so the software
rasteriser's threads draw while the UI thread prepares the 2D views), read back once per change at the paint, and
painted as an image; the rest of the window stays on the raster path, and
:meth:`QWidget.grab` captures the 3D view like any widget. Track-id labels are drawn in that raster pass (one
``drawText`` each, instead of one QPainter on the GL context per label, as ``GLTextItem`` does). The points are
one :class:`PointCloudItem` (square points, uint8 colours), the box edges one ``GLLinePlotItem(mode='lines')``.

Mouse and wheel: orbit, pan (Ctrl or middle button), zoom, from pyqtgraph's :class:`GLViewMixin`.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph.opengl as gl
from OpenGL import GL
from pyqtgraph.opengl.GLGraphicsItem import GLGraphicsItem
from pyqtgraph.opengl.GLViewWidget import GLViewMixin
from PySide6 import QtCore, QtGui, QtWidgets

from sensorlabel.geometry.boxes import BOX_EDGES, Boxes

from ..model.palette import SELECTED_RGB
from ..model.render import BACKGROUND_RGB

#: Track-id labels drawn at most (the nearest boxes get them).
MAX_LABELS = 48
#: Segments per box in :func:`box_segments`: 12 edges and 2 heading lines.
SEGMENTS_PER_BOX = 14


def box_segments(boxes: Boxes) -> np.ndarray:
    """(N*28, 3) float32 line-segment end points for ``GLLinePlotItem(mode='lines')``: the 12 edges of every box
    plus two heading segments (box centre to front-face centre, at mid and top height)."""
    n = len(boxes)
    if n == 0:
        return np.zeros((0, 3), np.float32)
    corners = boxes.corners()  # (N,8,3)
    edges = corners[:, BOX_EDGES.reshape(-1)]  # (N,24,3)
    front_center = boxes.center_m + boxes.rotation[:, :, 0] * (boxes.lwh_m[:, 0:1] / 2)
    heading = np.stack([boxes.center_m, front_center], axis=1)  # (N,2,3)
    lift = boxes.rotation @ np.array([0.0, 0.0, 0.5]) * boxes.lwh_m[:, 2:3]
    top_heading = heading + lift[:, None, :]
    return np.ascontiguousarray(np.concatenate([edges, heading, top_heading], axis=1).reshape(-1, 3), np.float32)


_POINT_SHADERS = {
    "legacy": ("""
        uniform mat4 u_mvp;
        uniform float u_size;
        attribute vec4 a_position;
        attribute vec4 a_color;
        varying vec4 v_color;
        void main() { gl_Position = u_mvp * a_position; v_color = a_color; gl_PointSize = u_size; }
    """, """
        #ifdef GL_ES
        precision mediump float;
        #endif
        varying vec4 v_color;
        void main() { gl_FragColor = v_color; }
    """),
    "core": ("""
        uniform mat4 u_mvp;
        uniform float u_size;
        in vec4 a_position;
        in vec4 a_color;
        out vec4 v_color;
        void main() { gl_Position = u_mvp * a_position; v_color = a_color; gl_PointSize = u_size; }
    """, """
        #ifdef GL_ES
        precision mediump float;
        #endif
        in vec4 v_color;
        out vec4 fragColor;
        void main() { fragColor = v_color; }
    """),
}


class PointCloudItem(GLGraphicsItem):
    """A point cloud as square points of one pixel size: float32 positions and uint8 RGBA colours (4 bytes a point).

    pyqtgraph's ``GLScatterPlotItem`` draws round point sprites (``gl_PointCoord`` and ``discard`` in the fragment
    shader, float colours, a per-point size attribute); with software GL that costs about 40 % more for 120k points.
    """

    _program_id: int | None = None  # one for the class: every context shares with the global share context

    def __init__(self, size_px: float = 2.0):
        from PySide6.QtOpenGL import QOpenGLBuffer

        super().__init__()
        self.setGLOptions("opaque")
        self.size_px = float(size_px)
        self._pos = np.zeros((0, 3), np.float32)
        self._rgba = np.zeros((0, 4), np.uint8)
        self._vbo_pos = QOpenGLBuffer(QOpenGLBuffer.Type.VertexBuffer)
        self._vbo_rgba = QOpenGLBuffer(QOpenGLBuffer.Type.VertexBuffer)
        self._dirty = False

    def set_data(self, pos: np.ndarray, rgba: np.ndarray) -> None:
        """(P,3) float32 positions and (P,4) uint8 colours (kept, uploaded at the next paint)."""
        self._pos = np.ascontiguousarray(pos, np.float32)
        self._rgba = np.ascontiguousarray(rgba, np.uint8)
        self._dirty = True
        self.update()

    def _program(self) -> int:
        from OpenGL.GL import shaders

        if PointCloudItem._program_id is None:
            context = QtGui.QOpenGLContext.currentContext()
            fmt = context.format()
            if context.isOpenGLES():
                kind, version = ("core", "300 es") if fmt.version() >= (3, 0) else ("legacy", "100")
            else:
                kind, version = ("core", "140") if fmt.version() >= (3, 1) else ("legacy", "120")
            version = f"#version {version}\n"
            vertex, fragment = _POINT_SHADERS[kind]
            program = shaders.compileProgram(shaders.compileShader([version, vertex], GL.GL_VERTEX_SHADER),
                                             shaders.compileShader([version, fragment], GL.GL_FRAGMENT_SHADER))
            GL.glBindAttribLocation(program, 0, "a_position")
            GL.glBindAttribLocation(program, 1, "a_color")
            GL.glLinkProgram(program)
            PointCloudItem._program_id = program
        return PointCloudItem._program_id

    def paint(self) -> None:
        if len(self._pos) == 0:
            return
        self.setupGLState()
        if self._dirty:
            for vbo, array in ((self._vbo_pos, self._pos), (self._vbo_rgba, self._rgba)):
                if not vbo.isCreated():
                    vbo.create()
                vbo.bind()
                vbo.allocate(array, array.nbytes)
                vbo.release()
            self._dirty = False
        program = self._program()
        if not QtGui.QOpenGLContext.currentContext().isOpenGLES():
            GL.glEnable(GL.GL_PROGRAM_POINT_SIZE)
        GL.glUseProgram(program)
        GL.glUniformMatrix4fv(GL.glGetUniformLocation(program, "u_mvp"), 1, False,
                              np.array(self.mvpMatrix().data(), np.float32))
        GL.glUniform1f(GL.glGetUniformLocation(program, "u_size"), self.size_px)
        self._vbo_pos.bind()
        GL.glVertexAttribPointer(0, 3, GL.GL_FLOAT, False, 0, None)
        self._vbo_rgba.bind()
        GL.glVertexAttribPointer(1, 4, GL.GL_UNSIGNED_BYTE, True, 0, None)
        self._vbo_rgba.release()
        GL.glEnableVertexAttribArray(0)
        GL.glEnableVertexAttribArray(1)
        GL.glDrawArrays(GL.GL_POINTS, 0, len(self._pos))
        GL.glDisableVertexAttribArray(0)
        GL.glDisableVertexAttribArray(1)
        GL.glUseProgram(0)


class View3D(GLViewMixin, QtWidgets.QWidget):
    """The sweep in 3D (ego frame) with the frame's boxes, rendered offscreen (see the module docstring).

    Raises:
        RuntimeError: no OpenGL context can be created (no display).
    """

    def __init__(self, parent=None):
        self._gl_dirty = True
        self._frame_image: QtGui.QImage | None = None
        self._rendered_size = QtCore.QSize()
        self._fbo = None
        self._context, self._surface = _offscreen_context()
        self._make_current()
        super().__init__(parent)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.initializeGL()
        self.setBackgroundColor(QtGui.QColor(*BACKGROUND_RGB))
        self.setCameraPosition(pos=QtGui.QVector3D(8, 0, 0), distance=55, elevation=32, azimuth=200)
        grid = gl.GLGridItem()
        grid.setSize(160, 160)
        grid.setSpacing(10, 10)
        grid.setColor((70, 75, 90, 120))
        grid.translate(0, 0, -1.9)
        self.addItem(grid)
        self.scatter = PointCloudItem(size_px=2.0)
        self.addItem(self.scatter)
        self.lines = gl.GLLinePlotItem(pos=np.zeros((2, 3), np.float32), mode="lines", width=1.5, antialias=False,
                                       glOptions="opaque")
        self.addItem(self.lines)
        self._label_xyz = np.zeros((0, 3))
        self._label_text: list[str] = []
        self._label_rgb = np.zeros((0, 3), np.uint8)
        self._label_font = QtGui.QFont("Sans", 8)
        self.render_count = 0
        self.setMinimumSize(200, 150)

    # ----- the QOpenGLWidget surface that GLViewMixin expects ------------------------------------------------------
    def context(self) -> QtGui.QOpenGLContext:
        return self._context

    def isValid(self) -> bool:
        return self._context is not None

    def makeCurrent(self) -> None:
        self._make_current()

    def _make_current(self) -> None:
        if not self._context.makeCurrent(self._surface):
            raise RuntimeError("cannot make the offscreen OpenGL context current")

    def update(self) -> None:  # GL items call this when their data changed
        self._gl_dirty = True
        super().update()

    def addItem(self, item) -> None:
        self._make_current()  # item initialisation creates GL buffers
        super().addItem(item)

    def resizeEvent(self, event) -> None:
        self._gl_dirty = True
        super().resizeEvent(event)

    def grabFramebuffer(self) -> QtGui.QImage:
        """The 3D scene as last rendered (without the labels)."""
        self._render()
        return QtGui.QImage(self._frame_image)

    def start_render(self) -> None:
        """Issue the GL drawing of the scene into the framebuffer object and flush it, without waiting for it (only
        when something changed). The software rasteriser's threads then draw while the UI thread prepares the other
        views; the paint event reads the pixels back."""
        from PySide6.QtOpenGL import QOpenGLFramebufferObject

        w, h = self.deviceWidth(), self.deviceHeight()
        if not self._gl_dirty and self._rendered_size == QtCore.QSize(w, h):
            return
        self._make_current()
        if self._fbo is None or self._fbo.size() != QtCore.QSize(w, h):
            self._fbo = QOpenGLFramebufferObject(
                QtCore.QSize(max(w, 1), max(h, 1)), QOpenGLFramebufferObject.Attachment.CombinedDepthStencil)
        self._fbo.bind()
        GL.glViewport(0, 0, w, h)
        self.paint(region=(0, 0, w, h), viewport=(0, 0, w, h))
        GL.glFlush()
        self._fbo.release()
        self._frame_image = None  # read back by _render
        self._rendered_size = QtCore.QSize(w, h)
        self._gl_dirty = False
        self.render_count += 1

    def _render(self) -> None:
        """The scene drawn (:meth:`start_render`) and read back into ``_frame_image``."""
        self.start_render()
        if self._frame_image is None:
            self._make_current()
            self._frame_image = self._fbo.toImage()

    def paintEvent(self, event) -> None:
        self._render()
        p = QtGui.QPainter(self)
        p.drawImage(self.rect(), self._frame_image)
        self._paint_labels(p)
        p.end()

    def _paint_labels(self, p: QtGui.QPainter) -> None:
        if not self._label_text:
            return
        w, h = self.width(), self.height()
        mvp = self.projectionMatrix((0, 0, w, h), (0, 0, w, h)) * self.viewMatrix()
        m = np.array(mvp.data(), np.float64).reshape(4, 4).T  # QMatrix4x4.data() is column-major
        clip = np.c_[self._label_xyz, np.ones(len(self._label_xyz))] @ m.T
        with np.errstate(invalid="ignore", divide="ignore"):
            ndc = clip[:, :2] / clip[:, 3:4]
        show = (clip[:, 3] > 0) & (np.abs(ndc) <= 1).all(axis=1)
        x = (ndc[:, 0] + 1) * 0.5 * w
        y = (1 - ndc[:, 1]) * 0.5 * h
        p.setFont(self._label_font)
        for i in np.flatnonzero(show):
            p.setPen(QtGui.QColor(*(int(c) for c in self._label_rgb[i])))
            p.drawText(QtCore.QPointF(x[i] - 3, y[i]), self._label_text[i])

    # ----- data -----------------------------------------------------------------------------------------------------
    def set_points(self, points_ego: np.ndarray, rgba: np.ndarray) -> None:
        """Replace the cloud: (P,3) float32 positions and (P,4) uint8 RGBA colours."""
        self.scatter.set_data(points_ego, rgba)

    def set_boxes(self, boxes: Boxes, rgb: np.ndarray, selected: int = -1) -> None:
        """Replace the boxes: N boxes with (N,3) uint8 class colours; ``selected`` is drawn white."""
        segments = box_segments(boxes)
        if len(segments) == 0:
            self.lines.setData(pos=np.zeros((2, 3), np.float32), color=(0, 0, 0, 0))
        else:
            colors = np.ones((len(boxes), 2 * SEGMENTS_PER_BOX, 4), np.float32)
            colors[:, :, :3] = rgb[:, None, :].astype(np.float32) / 255
            if 0 <= selected < len(boxes):
                colors[selected, :, :3] = np.array(SELECTED_RGB, np.float32) / 255
            self.lines.setData(pos=segments, color=colors.reshape(-1, 4), mode="lines", width=1.5)
        n = min(len(boxes), MAX_LABELS)
        order = np.argsort(np.hypot(boxes.center_m[:, 0], boxes.center_m[:, 1]))[:n] if len(boxes) else []
        self._label_xyz = boxes.center_m[order] + np.c_[np.zeros((n, 2)), boxes.lwh_m[order, 2] / 2 + 0.3]
        self._label_text = [str(int(t)) for t in boxes.track_id[order]]
        self._label_rgb = rgb[order]

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(640, 420)


def _offscreen_context() -> tuple[QtGui.QOpenGLContext, QtGui.QOffscreenSurface]:
    """An OpenGL context on an offscreen surface, sharing with the application's global share context (pyqtgraph
    compiles each item class's shader program once, in the first context)."""
    fmt = QtGui.QSurfaceFormat.defaultFormat()
    context = QtGui.QOpenGLContext()
    context.setFormat(fmt)
    share = QtGui.QOpenGLContext.globalShareContext()
    if share is not None:
        context.setShareContext(share)
    if not context.create():
        raise RuntimeError("cannot create an OpenGL context (is there a display?)")
    surface = QtGui.QOffscreenSurface()
    surface.setFormat(context.format())
    surface.create()
    return context, surface
