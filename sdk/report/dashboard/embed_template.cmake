# Writes OUTPUT, a C++ file defining neuronmap::report::kDashboardTemplate with INPUT's text.
file(READ ${INPUT} text)
string(FIND "${text}" ")NMHTML\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${INPUT} contains the raw-string delimiter )NMHTML\"")
endif()
file(WRITE ${OUTPUT}.tmp "// Generated from dashboard/dashboard.html by embed_template.cmake; do not edit.\n"
     "#include \"report/dashboard.hpp\"\n\n"
     "const char* const neuronmap::report::kDashboardTemplate = R\"NMHTML(${text})NMHTML\";\n")
file(COPY_FILE ${OUTPUT}.tmp ${OUTPUT} ONLY_IF_DIFFERENT)
file(REMOVE ${OUTPUT}.tmp)
