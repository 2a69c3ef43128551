"""The napari plugin: Degrade, Train, Predict and Compare widgets, sample data and an OME-Zarr writer.

Installed with ``pip install 'microsr[napari]'``; napari finds it through the npe2
manifest ``napari.yaml`` and lists the widgets under Plugins > microsr. Every
widget is a thin shell over the Python API that the ``microsr`` command uses.
"""
