"""The judge: the dynamic reward's aspect selection and the per-answer verdict, shared by every graph."""
