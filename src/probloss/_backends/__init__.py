"""One module per backend, each holding the native implementations that
:mod:`probloss._dispatch` names for it; every other loss runs its generic formula."""
