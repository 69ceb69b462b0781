#!/usr/bin/env Rscript
# make_glmm_datasets.R -- regenerate the GLMM data sets bundled with sklmm.
#
# How to run (from the repository root):
#     Rscript tools/make_glmm_datasets.R
#
# Needs R >= 4.0 with the packages lme4, mlmRev (Debian/Ubuntu:
#     apt-get install r-base-core r-cran-lme4 r-cran-mlmrev
# ).  Only *data* are taken from those packages; no R code is copied into
# sklmm.  The script writes:
#     sklmm/datasets/data/{cbpp,grouseticks,verbagg,contraception}.csv
#
# CSV conventions are those of tools/make_datasets.R: comma separated, one
# header line, no row names, no quoting (no label contains a comma or a
# quote), factors written as their labels, doubles written with the shortest
# decimal representation (15, 16 or 17 significant digits) that reads back as
# exactly the same IEEE double.  Integer columns (VerbAgg$Anger) are written
# as doubles.
#
# A CSV cannot carry R's factor-level order, so the loaders in
# sklmm/datasets/_glmm.py hard-code it.  The LEVELS below are the same orders;
# the script stops if R's levels() differ from them, so a change in lme4 or
# mlmRev cannot go unnoticed.  Factors whose levels are integer labels
# ("1", "2", ..., "10", ...) are listed as NUMERIC: their R levels are the
# labels in increasing numeric order (not the string-sorted order), which is
# what the loaders use for them.  The script also stops if model.matrix()
# does not give the treatment-contrast column names that the loaders' X
# (return_X_y=True) uses.

suppressPackageStartupMessages({
  library(lme4)
  library(mlmRev)
})

if (!dir.exists("sklmm/datasets/data")) {
  stop("run this script from the repository root: Rscript tools/make_glmm_datasets.R")
}

source("tools/csv_helpers.R")  # fmt_double, write_data

NUMERIC <- "numeric"   # levels are the integer labels in increasing order

# Stop unless every factor of df has exactly the levels in `levels` (a list
# name -> character vector or NUMERIC), every level is used, and no other
# column is a factor.
check_levels <- function(df, levels, what) {
  facs <- names(df)[vapply(df, is.factor, TRUE)]
  if (!setequal(facs, names(levels))) {
    stop(what, ": factors are ", paste(facs, collapse = ", "),
         "; LEVELS lists ", paste(names(levels), collapse = ", "))
  }
  for (nm in facs) {
    lev <- levels(df[[nm]])
    want <- levels[[nm]]
    if (identical(want, NUMERIC)) {
      want <- as.character(sort(unique(as.integer(lev))))
      if (anyNA(as.integer(lev))) stop(what, "$", nm, ": non-integer label")
    }
    if (!identical(lev, want)) {
      stop(what, "$", nm, ": R's levels differ from the loader's order:\n  R:      ",
           paste(lev, collapse = " "), "\n  loader: ", paste(want, collapse = " "))
    }
    if (!all(lev %in% as.character(df[[nm]]))) stop(what, "$", nm, ": unused level")
  }
}

# Stop unless model.matrix(rhs, df) has the columns (Intercept), `columns`.
check_columns <- function(rhs, df, columns, what) {
  got <- colnames(model.matrix(rhs, df))
  if (!identical(got, c("(Intercept)", columns))) {
    stop(what, ": model.matrix columns ", paste(got, collapse = ", "),
         "; the loader's X has ", paste(columns, collapse = ", "))
  }
}

dd <- "sklmm/datasets/data"

## --- lme4::cbpp ---------------------------------------------------------------
cbpp <- lme4::cbpp[, c("herd", "incidence", "size", "period")]
check_levels(cbpp, list(herd = NUMERIC, period = c("1", "2", "3", "4")), "cbpp")
check_columns(~ period, cbpp, c("period2", "period3", "period4"), "cbpp")
stopifnot(nrow(cbpp) == 56)
write_data(cbpp, file.path(dd, "cbpp.csv"))

## --- lme4::grouseticks (without cHEIGHT, which is HEIGHT - mean(HEIGHT)) -----
grouseticks <- lme4::grouseticks[, c("INDEX", "TICKS", "BROOD", "HEIGHT",
                                     "YEAR", "LOCATION")]
check_levels(grouseticks, list(INDEX = NUMERIC, BROOD = NUMERIC,
                               YEAR = c("95", "96", "97"), LOCATION = NUMERIC),
             "grouseticks")
check_columns(~ HEIGHT + YEAR, grouseticks, c("HEIGHT", "YEAR96", "YEAR97"),
              "grouseticks")
stopifnot(nrow(grouseticks) == 403)
write_data(grouseticks, file.path(dd, "grouseticks.csv"))

## --- lme4::VerbAgg ------------------------------------------------------------
# item is in the design order of the questionnaire, not sorted; the label
# "S4wantCurse" (lower-case w) is as in lme4.  resp is an ordered factor in R.
verbagg <- lme4::VerbAgg[, c("Anger", "Gender", "item", "resp", "id", "btype",
                             "situ", "mode", "r2")]
check_levels(verbagg, list(
  Gender = c("F", "M"),
  item = c("S1WantCurse", "S1WantScold", "S1WantShout", "S2WantCurse",
           "S2WantScold", "S2WantShout", "S3WantCurse", "S3WantScold",
           "S3WantShout", "S4wantCurse", "S4WantScold", "S4WantShout",
           "S1DoCurse", "S1DoScold", "S1DoShout", "S2DoCurse", "S2DoScold",
           "S2DoShout", "S3DoCurse", "S3DoScold", "S3DoShout", "S4DoCurse",
           "S4DoScold", "S4DoShout"),
  resp = c("no", "perhaps", "yes"),
  id = NUMERIC,
  btype = c("curse", "scold", "shout"),
  situ = c("other", "self"),
  mode = c("want", "do"),
  r2 = c("N", "Y")), "VerbAgg")
check_columns(~ Anger + Gender + btype + situ + mode, verbagg,
              c("Anger", "GenderM", "btypescold", "btypeshout", "situself",
                "modedo"), "VerbAgg")
stopifnot(nrow(verbagg) == 7584)
write_data(verbagg, file.path(dd, "verbagg.csv"))

## --- mlmRev::Contraception ----------------------------------------------------
# district 54 does not occur (60 districts labelled 1..61).
contraception <- mlmRev::Contraception[, c("woman", "district", "use", "livch",
                                           "age", "urban")]
check_levels(contraception, list(woman = NUMERIC, district = NUMERIC,
                                 use = c("N", "Y"),
                                 livch = c("0", "1", "2", "3+"),
                                 urban = c("N", "Y")), "Contraception")
check_columns(~ age + I(age^2) + livch + urban, contraception,
              c("age", "I(age^2)", "livch1", "livch2", "livch3+", "urbanY"),
              "Contraception")
stopifnot(nrow(contraception) == 1934)
write_data(contraception, file.path(dd, "contraception.csv"))
