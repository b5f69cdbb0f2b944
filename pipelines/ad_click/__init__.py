"""Ad click prediction on a social platform (the book's chapter on ad click prediction)."""
