"""A picture whose name says another format (a PNG saved as cover.jpg, as a phone or a web
page's "save as" makes them): the networks are told the type its bytes are, not its name's."""

from __future__ import annotations

from conftest import MakeProject
from media_servers import MediaServers
from PIL import Image
from test_media_publish import make, run, servers  # noqa: F401 (the servers fixture)

from commcal.publish import OutcomeState


def test_a_png_named_jpg_goes_to_matrix_as_image_png(
    make_project: MakeProject,
    servers: MediaServers,  # noqa: F811 (test_media_publish's fixture)
) -> None:
    root = make(make_project, servers, "matrix", images=2)
    Image.new("RGB", (30, 40), "orange").save(root / "media" / "map.jpg", "PNG")
    assert run(root) == {OutcomeState.SENT: 1}
    _, (_, png), (_, named_jpg) = servers.events
    assert png["info"]["mimetype"] == "image/png"
    assert named_jpg["info"]["mimetype"] == "image/png", named_jpg
