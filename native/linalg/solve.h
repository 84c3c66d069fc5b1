// Building blocks of the closed-form merges (LOT, RegMean) on top of linalg.h:
// accumulating A = Σt Gt and Bᵀ = Σt Tt Gtᵀ from file-dtype inputs, and
// solving X A = Bᵀ for a positive semi-definite A.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

#include "../core/dtype.h"
#include "linalg.h"

namespace taskmerge {
namespace linalg {

enum class Solver { Auto, Cholesky, Eigh };
Solver parseSolver(const std::string& name);  // "auto" | "cholesky" | "eigh"

// How Gt is transformed before use: G̃ = scale·(alpha·G + (1−alpha)·diag G).
// LOT uses the raw Gram (scale 1, alpha 1); RegMean the shrunk mean Gram.
struct GramTransform {
  double scale = 1.0;
  double alpha = 1.0;
};

// Adds G̃ to A [in,in] and T G̃ᵀ to BT [out,in], where T = expert − base
// ([out,in], file dtypes) and G the [in,in] Gram in its file dtype. The Gram is
// converted to float64 in row blocks of at most 256 MB (all of it when it fits); the
// caller has checked it (op "gram_check"). Throws InputError (role "base" or
// "expert") when a weight holds NaN or ±Inf.
void accumulateGramProducts(size_t out, size_t in, const uint8_t* base, DType baseType, const uint8_t* expert,
                            DType expertType, const uint8_t* gram, DType gramType, GramTransform tf, double* A,
                            double* BT, DenseOps& la);

struct SolveInfo {
  bool usedEigh = false;  // the eigen-decomposition pseudo-inverse was used
  size_t rank = 0;        // eigenvalues kept (eigh), or n (Cholesky)
};

// Solves X A = B for the nrhs rows of B ([nrhs,n], overwritten by X) with A
// symmetric positive semi-definite ([n,n], full, destroyed).
//  cholesky: factor A + ridge·mean(diag A)·I; failure is an error.
//  auto:     the same, falling back to eigh when the factorisation fails.
//  eigh:     X = B A⁺, eigenvalues ≤ rcond·max|λ| (and negative ones) dropped.
// The linear algebra runs on `la` (the op's backend).
SolveInfo solvePsdRows(size_t n, double* A, size_t nrhs, double* B, Solver s, double ridge, double rcond, DenseOps& la);

}  // namespace linalg
}  // namespace taskmerge
