# csv_helpers.R -- writing data frames as CSV files whose doubles read back bit for bit.
# Not a script of its own: tools/make_datasets.R and tools/make_glmm_datasets.R source it
# (they run from the repository root).

# Shortest round-trip decimal representation of each double.
fmt_double <- function(x) {
  out <- sprintf("%.15g", x)
  bad <- !is.na(x) & as.numeric(out) != x
  out[bad] <- sprintf("%.16g", x[bad])
  bad <- !is.na(x) & as.numeric(out) != x
  out[bad] <- sprintf("%.17g", x[bad])
  stopifnot(all(is.na(x) | as.numeric(out) == x))
  out[is.na(x)] <- "NA"
  out
}

# Write df as CSV (no quoting, factors as labels) and read it back to check the round trip.
write_data <- function(df, path) {
  out <- lapply(df, function(col) {
    if (is.factor(col)) col <- as.character(col)
    if (is.character(col)) {
      if (any(grepl("[,\"\n]", col))) stop("label with comma/quote in ", path)
      col
    } else if (is.numeric(col)) {
      fmt_double(as.double(col))
    } else {
      stop("unsupported column type in ", path)
    }
  })
  out <- as.data.frame(out, stringsAsFactors = FALSE, optional = TRUE)
  names(out) <- names(df)
  write.table(out, path, sep = ",", quote = FALSE, row.names = FALSE,
              col.names = TRUE, eol = "\n")
  back <- read.csv(path, colClasses = "character", check.names = FALSE)
  stopifnot(identical(names(back), names(df)))
  for (nm in names(df)) {
    if (is.numeric(df[[nm]])) {
      stopifnot(identical(as.numeric(back[[nm]]), as.double(df[[nm]])))
    } else {
      stopifnot(identical(back[[nm]], as.character(df[[nm]])))
    }
  }
  cat(sprintf("wrote %-40s %4d rows x %d cols\n", path, nrow(df), ncol(df)))
}
